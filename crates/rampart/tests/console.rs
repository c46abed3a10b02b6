#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The operator console in a real browser (headless Chromium through ChromeDriver): an
//! operator signs in, sees the campaign Sentinel stopped, notifies its target, undoes the
//! action (the account can call again), verifies the evidence log and exports the case. Then
//! what an attacker would try against the console itself: requests without a session, forged
//! forms (no CSRF token, another site's origin, a login form from elsewhere) and guessing the
//! password, each refused.
//!
//! With `RAMPART_SCREENSHOTS=DIR` the pages are also saved as PNG files there (docs/console
//! holds the ones the docs show).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use rampart_core::AccountId;
use rampart_proto::ErrorCode;
use support::campaign::{garbage_call, probe_until_stopped, refusal};
use support::*;

const PASSWORD: &str = "correct horse battery staple";

/// ChromeDriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start ChromeDriver, or `None` (outside CI) when Chromium or ChromeDriver is not installed.
fn start_driver() -> Option<Driver> {
    let installed = ["chromedriver", "chromium"]
        .iter()
        .all(|tool| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()));
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium and chromedriver are needed under CI (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: chromium or chromedriver is not installed");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Dropped (killed and waited for) whatever happens next.
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(driver);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not start listening");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", format!("--user-data-dir={}", profile.display())]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

async fn screenshot(page: &fantoccini::Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Ok(dir) = std::env::var("RAMPART_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn text_of(page: &fantoccini::Client, css: &str) -> String {
    match page.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap(),
        Err(e) => {
            let url = page.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let source = page.source().await.unwrap_or_default();
            panic!("{css} never appeared ({e}) on {url}:\n{source}");
        }
    }
}

/// Submit a form whose button asks for confirmation, and confirm.
async fn click_and_confirm(page: &fantoccini::Client, css: &str) {
    page.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    for _ in 0..50 {
        if page.accept_alert().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no confirmation was asked for {css}");
}

async fn sign_in(page: &fantoccini::Client, base: &str, name: &str, password: &str) {
    page.goto(&format!("{base}/login")).await.unwrap();
    page.find(Locator::Id("name")).await.unwrap().send_keys(name).await.unwrap();
    page.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    page.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
}

#[tokio::test]
async fn an_operator_works_a_campaign_in_the_console_and_forged_requests_are_refused() {
    let Some(driver) = start_driver() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let base = format!("http://{}", server.console.expect("the console listens"));

    // An operator, added the way the docs say.
    let mut add = Command::new(BIN)
        .args(["--json", "admin", "console", "add-operator", "alice", "--password-stdin", "--config"])
        .arg(server.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stdout));
    let operators = std::fs::read_to_string(server.data_dir.join("console/operators")).unwrap();
    assert!(operators.contains("alice:$argon2id$") && !operators.contains(PASSWORD));

    // A campaign in miniature: Mallory probes Bob until Sentinel stops her.
    let mut mallory = server.register(dir.path(), "mallory", "+14155552401", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155552402", Some("bob")).await;
    let mallory_id = AccountId(mallory.identity().unwrap().account_id);
    let bob_id = bob.identity().unwrap().account_id;
    probe_until_stopped(&mut mallory, AccountId(bob_id)).await;

    let page = browser(&driver, &dir.path().join("chromium")).await;
    // Without a session every page leads to the login.
    page.goto(&format!("{base}/actions")).await.unwrap();
    assert!(page.current_url().await.unwrap().path().ends_with("/login"));
    screenshot(&page, "login").await;
    sign_in(&page, &base, "alice", "not the password").await;
    assert_eq!(text_of(&page, "#error").await, "Wrong name or password.");
    sign_in(&page, &base, "alice", PASSWORD).await;
    assert_eq!(text_of(&page, "#in-force").await, "1");
    assert_eq!(text_of(&page, "#cluster-count").await, "1");
    assert!(page.source().await.unwrap().contains("<svg class=\"chart\""), "no charts");
    screenshot(&page, "overview").await;

    // The cluster: Mallory in it, Bob its target; notify him.
    page.find(Locator::LinkText("Clusters")).await.unwrap().click().await.unwrap();
    let cluster_id = format!("c{}", mallory_id.0);
    page.find(Locator::LinkText(&cluster_id)).await.unwrap().click().await.unwrap();
    assert!(text_of(&page, "#accounts").await.contains(&format!("a{}", mallory_id.0)));
    assert!(text_of(&page, "#targets").await.contains(&format!("a{bob_id}")));
    screenshot(&page, "cluster").await;
    click_and_confirm(&page, "#notify").await;
    assert!(text_of(&page, "#notice").await.starts_with("Notice queued for 1 targets"), "no notice");
    let events = bob.receive_events(Some(Duration::from_secs(2)), |_| {}).await.unwrap();
    assert!(
        events.iter().any(|e| matches!(e, rampart_client::Event::ServerNotice { text, .. } if text.contains("attack campaign"))),
        "{events:?}"
    );

    // The export, fetched with the browser's session, verifies.
    let session = page.get_named_cookie("rampart_console").await.unwrap();
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = format!("rampart_console={}", session.value());
    let case = http
        .get(format!("{base}/clusters/{cluster_id}/case.json"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(case.status(), 200);
    let case_path = dir.path().join("case.json");
    std::fs::write(&case_path, case.bytes().await.unwrap()).unwrap();
    let key = std::fs::read_to_string(server.data_dir.join("evidence/key.pub")).unwrap();
    let verified = Command::new(BIN)
        .args(["admin", "sentinel", "verify-case"])
        .arg(&case_path)
        .args(["--key", key.trim()])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));

    // Forged requests, with and without the session: nothing is lifted by them.
    let csrf =
        page.find(Locator::Css("input[name=csrf]")).await.unwrap().attr("value").await.unwrap().unwrap();
    let subject = format!("a{}", mallory_id.0);
    let lift = |cookie: Option<&str>, token: &str, origin: Option<&str>| {
        let mut request =
            http.post(format!("{base}/actions/lift")).form(&[("csrf", token), ("subject", subject.as_str())]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let no_session = lift(None, &csrf, None).await.unwrap();
    assert_eq!(no_session.status(), 303, "a form without a session goes to the login");
    let no_token = lift(Some(&cookie), "forged", None).await.unwrap();
    assert_eq!(no_token.status(), 403);
    let other_site = lift(Some(&cookie), &csrf, Some("http://evil.example")).await.unwrap();
    assert_eq!(other_site.status(), 403);
    let mut conn = mallory.connect().await.unwrap();
    let still = refusal(conn.request(garbage_call(AccountId(bob_id))).await);
    assert_eq!(still.code, ErrorCode::Forbidden, "a forged request lifted the suspension: {still:?}");

    // Undo, from the actions page: Mallory's calls are back to the call schema's refusal.
    page.find(Locator::LinkText("Actions")).await.unwrap().click().await.unwrap();
    screenshot(&page, "actions").await;
    click_and_confirm(&page, "button.undo").await;
    assert_eq!(text_of(&page, "#notice").await, format!("Lifted 1 action(s) on {subject}."));
    let after = refusal(conn.request(garbage_call(AccountId(bob_id))).await);
    assert_eq!(after.code, ErrorCode::BadRequest, "the undo did not restore the account: {after:?}");

    // The evidence log, verified from the console.
    page.find(Locator::LinkText("Evidence")).await.unwrap().click().await.unwrap();
    page.find(Locator::Id("verify")).await.unwrap().click().await.unwrap();
    let result = text_of(&page, "#verify-result").await;
    assert!(result.starts_with("The log verifies"), "{result}");
    screenshot(&page, "evidence").await;

    // Signing out ends the session on the server, not only in the browser.
    page.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    // The click only starts the form's submission: wait for the sign-in page it leads to, so
    // the session is over on the server before it is tried.
    page.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("sign-in")).await.unwrap();
    let after_logout = http.get(format!("{base}/actions")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after_logout.status(), 303);
    page.close().await.unwrap();

    // A login form posted from elsewhere (no login cookie) is refused before any password check.
    let foreign = http
        .post(format!("{base}/login"))
        .form(&[("name", "alice"), ("password", PASSWORD), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // Guessing: after five failures from this address (the browser's wrong password was the
    // first) even the right password is braked.
    let login_form = || async {
        let page = http.get(format!("{base}/login")).send().await.unwrap();
        let cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .find_map(|v| v.to_str().ok().filter(|v| v.starts_with("rampart_login=")).map(str::to_owned))
            .unwrap();
        let token = cookie.trim_start_matches("rampart_login=").split(';').next().unwrap().to_owned();
        (format!("rampart_login={token}"), token)
    };
    for _ in 0..4 {
        let (cookie, token) = login_form().await;
        let guess = http
            .post(format!("{base}/login"))
            .header("cookie", cookie)
            .form(&[("name", "alice"), ("password", "guess"), ("csrf", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(guess.status(), 401);
    }
    let (cookie, token) = login_form().await;
    let braked = http
        .post(format!("{base}/login"))
        .header("cookie", cookie)
        .form(&[("name", "alice"), ("password", PASSWORD), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(braked.status(), 429);
    assert!(braked.text().await.unwrap().contains("Too many failed logins"));
    let failed = server.metric("rampart_console_logins_total{outcome=\"failed\"}").await;
    assert_eq!(failed, Some(5.0), "failed sign-ins are counted");
}
