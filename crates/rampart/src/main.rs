//! `rampart`: the server, its admin tools and the client, in one command.
#![forbid(unsafe_code)]

#[macro_use]
mod output;

mod bench;
mod call_cmds;
mod chat;
mod cli;
mod client_cmds;
mod console_cmds;
mod evidence_cmds;
mod request_cmds;
mod sentinel_cmds;
mod serve;
mod sim;

fn main() -> std::process::ExitCode {
    let cli = cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if json {
                let kind =
                    e.downcast_ref::<rampart_client::ClientError>().map(|c| c.kind()).unwrap_or("error");
                outln!("{}", serde_json::json!({ "ok": false, "error": kind, "message": format!("{e:#}") }));
            } else {
                eprintln!("error: {}", client_cmds::printable(&format!("{e:#}")));
            }
            std::process::ExitCode::FAILURE
        }
    }
}
