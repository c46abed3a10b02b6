//! `rampart admin console`: the operators who may sign in to the console.

use std::io::Read;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_server::console::auth;
use zeroize::Zeroizing;

use crate::serve::{self, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Add an operator (or set a new password for one). The password is asked for twice
    /// (at least 12 characters), or read from standard input with --password-stdin; only its
    /// Argon2id hash is kept, in DATA_DIR/console/operators. A running server sees the change
    /// at the next sign-in.
    AddOperator(AddOperatorArgs),
    /// Remove an operator; their sessions end at their next request.
    RemoveOperator(OperatorArgs),
    /// List the operators (names only).
    Operators(StoreArgs),
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// 1 to 32 of a-z, 0-9, '_', '.', '-'.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AddOperatorArgs {
    #[command(flatten)]
    pub operator: OperatorArgs,
    /// Read the password from standard input (its first line) instead of asking.
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(command: ConsoleCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ConsoleCommand::AddOperator(args) => add(args, json),
        ConsoleCommand::RemoveOperator(args) => remove(args, json),
        ConsoleCommand::Operators(args) => list(args, json),
    }
}

fn add(args: AddOperatorArgs, json: bool) -> anyhow::Result<()> {
    let config = serve::load_config(&args.operator.store)?;
    let path = auth::operators_path(&config.data_dir);
    let password = if args.password_stdin {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(auth::MAX_PASSWORD_BYTES as u64 + 2)
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
    } else {
        let first = Zeroizing::new(rpassword::prompt_password("Password for the operator: ")?);
        let again = Zeroizing::new(rpassword::prompt_password("Repeat it: ")?);
        anyhow::ensure!(*first == *again, "the two passwords differ; nothing was changed");
        first
    };
    auth::set_operator(&path, &args.operator.name, &password)?;
    let url = format!("http://{}", config.console.listen);
    if json {
        outln!(
            "{}",
            serde_json::json!({ "ok": true, "operator": args.operator.name, "file": path, "console": url })
        );
    } else {
        outln!("Operator {} can sign in to the console: {url}", args.operator.name);
        outln!("  (kept as an Argon2id hash in {})", path.display());
        if !config.console.listen.ip().is_loopback() {
            outln!("  The console listens beyond loopback: make sure a TLS proxy is in front.");
        } else {
            outln!(
                "  From another machine: ssh -L {0}:{1} THIS-HOST, then open http://{1}",
                config.console.listen.port(),
                config.console.listen
            );
        }
    }
    Ok(())
}

fn remove(args: OperatorArgs, json: bool) -> anyhow::Result<()> {
    let config = serve::load_config(&args.store)?;
    let removed = auth::remove_operator(&auth::operators_path(&config.data_dir), &args.name)?;
    if json {
        outln!("{}", serde_json::json!({ "ok": true, "operator": args.name, "removed": removed }));
    } else if removed {
        outln!("Operator {} removed; their sessions end at their next request.", args.name);
    } else {
        outln!("There is no operator {}.", args.name);
    }
    Ok(())
}

fn list(args: StoreArgs, json: bool) -> anyhow::Result<()> {
    let config = serve::load_config(&args)?;
    let operators = auth::read_operators(&auth::operators_path(&config.data_dir))?;
    let names: Vec<&str> = operators.iter().map(|(n, _)| n.as_str()).collect();
    if json {
        outln!("{}", serde_json::json!({ "ok": true, "operators": names }));
    } else if names.is_empty() {
        outln!("No operators yet: rampart admin console add-operator NAME");
    } else {
        for name in names {
            outln!("{name}");
        }
    }
    Ok(())
}
