//! The conformance suite on PostgreSQL, each check in a database of its own that is dropped
//! afterwards.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/postgres` unless RAMPART_TEST_DATABASE_URL
//! names another; the role must be allowed to create databases. When the server cannot be
//! reached the tests print a notice and pass, except when CI=true: there they fail, so a broken
//! CI database cannot silently skip the suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;

use rampart_store::postgres::PostgresStore;
use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn base_url() -> String {
    std::env::var("RAMPART_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.into())
}

/// Where the tests look, for messages: the default URL, but never an override (it may hold a
/// password).
fn describe_server() -> &'static str {
    if std::env::var_os("RAMPART_TEST_DATABASE_URL").is_some() {
        "RAMPART_TEST_DATABASE_URL"
    } else {
        DEFAULT_URL
    }
}

/// `url` with its database name replaced by `db`. Only the URL form is supported.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let authority = head.find("://").map_or(0, |i| i + 3);
    let server = match head[authority..].find('/') {
        Some(i) => &head[..authority + i],
        None => head,
    };
    match query {
        Some(query) => format!("{server}/{db}?{query}"),
        None => format!("{server}/{db}"),
    }
}

/// A connection to the maintenance database, or `None` (after a notice) to skip the test.
async fn admin() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&base_url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        // The server answered (bad role, missing database, authentication): a configuration
        // error to fix, not a missing server.
        Err(e) if e.as_db_error().is_some() => {
            panic!("PostgreSQL ({}) refused the connection: {e:?}", describe_server())
        }
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|c| format!(" ({c})")).unwrap_or_default();
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "PostgreSQL ({}) is unreachable: {e}{cause}. CI=true, so the PostgreSQL \
                     conformance tests must run: start the database or fix RAMPART_TEST_DATABASE_URL.",
                    describe_server()
                );
            }
            eprintln!(
                "NOTICE: skipping PostgreSQL test, server ({}) unreachable: {e}{cause}. Start \
                 PostgreSQL or set RAMPART_TEST_DATABASE_URL to run it.",
                describe_server()
            );
            None
        }
    }
}

/// Create a fresh database, run `test` with its URL, then drop the database, even if the test
/// panicked (the panic is re-raised afterwards).
async fn with_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin) = admin().await else { return };
    let name = format!("rampart_test_{:016x}", rand::random::<u64>());
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
    let outcome = tokio::spawn(test(with_database(&base_url(), &name))).await;
    // FORCE (PostgreSQL 13+) ends sessions a failed test may have left behind.
    if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
        eprintln!("could not drop test database {name}: {e}");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn run<F, Fut>(check: F)
where
    F: FnOnce(Arc<PostgresStore>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_fresh_database(|url| async move {
        let store = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
        check(Arc::clone(&store)).await;
        store.close();
    })
    .await;
}

rampart_store::conformance_tests!(run);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    with_fresh_database(|url| async move {
        let connects: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PostgresStore::connect(&url).await })
            })
            .collect();
        for c in connects {
            c.await.unwrap().expect("every node starts");
        }
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(connection);
        let rows = client.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.unwrap();
        let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9], "each migration applied exactly once");
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_is_a_backend_error() {
    // Port 1 on loopback: nothing listens there.
    let r = PostgresStore::connect("postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2").await;
    assert!(matches!(r, Err(rampart_store::StoreError::Backend(_))), "{r:?}");
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
}
