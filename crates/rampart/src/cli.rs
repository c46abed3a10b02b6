//! Command-line interface: what each subcommand takes, with help that teaches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{bench, client_cmds, console_cmds, evidence_cmds, sentinel_cmds, serve, sim};

/// Rampart: end-to-end encrypted messaging you can run yourself.
///
/// Start a server with `rampart serve`, then register with
/// `rampart account register --server https://HOST:8443 --phone +15551234567`.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    /// Client profile directory (this device's account, keys and messages).
    #[arg(long, global = true, env = "RAMPART_PROFILE", value_name = "DIR")]
    pub profile: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Read the passphrase of an encrypted profile from this file (first line). Without it,
    /// RAMPART_PASSPHRASE is used, or you are asked on the terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTPS + WebSocket, embedded SQLite by default).
    Serve(serve::ServeArgs),
    /// Operator tools that work on the server's data directly.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Register, verify, link this device to an existing account, or inspect the account.
    #[command(subcommand)]
    Account(AccountCommand),
    /// List, approve (link) and revoke this account's devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Send an end-to-end encrypted text to +E164, @username, or a group (by name or id).
    ///
    /// A person gets it in your 1:1 conversation, created on first use with every device of
    /// both accounts. The server only ever sees MLS ciphertext.
    Send {
        /// Recipient: +14155550123, @username, or a group's name or id (see `conversations`).
        to: String,
        /// The message text.
        text: String,
    },
    /// Send a file (up to 100 MiB), encrypted end to end, to a person or a group.
    ///
    /// The file is sealed on this device with a fresh key; the server stores only ciphertext
    /// and the key travels inside the MLS message. Shows a progress bar while uploading.
    SendFile {
        /// Recipient: +14155550123, @username, or a group's name or id.
        to: String,
        /// The file to send.
        path: PathBuf,
        /// Text shown with the file.
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Download and decrypt a received attachment (its number is shown by `history`).
    ///
    /// The file is saved only if it is whole and its digest matches what the sender sent.
    Download {
        /// The history line's number (`#12` in `rampart history`).
        seq: i64,
        /// Where to save it (default: your downloads folder).
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
    /// List this device's conversations (1:1 and groups) with their ids.
    Conversations,
    /// Encrypt this profile at rest under a passphrase, change it, or remove it.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Create and manage group conversations.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show the safety number with a contact: compare it in person (or scan the QR code) to
    /// be sure nobody sits between you. It comes from your two identity keys, so it changes
    /// when either of you registers again (or a server presents keys of its own), not when a
    /// device is linked; it also checks that your conversation holds only devices your
    /// identities certified. Once compared, --mark-verified: if their identity then changes,
    /// nothing is sent to them until you compare again.
    Verify {
        /// +E164 or @username.
        who: String,
        /// You compared the numbers and they match: hold sending if this identity changes.
        #[arg(long, conflicts_with = "unverify")]
        mark_verified: bool,
        /// Stop treating them as verified (sending is no longer held on a change).
        #[arg(long)]
        unverify: bool,
    },
    /// Receive queued messages (and wait for more with --wait, or stay online with --follow).
    Recv {
        /// Keep listening for this many seconds instead of returning once the queue is empty.
        #[arg(long, value_name = "SECS", conflicts_with = "follow")]
        wait: Option<u64>,
        /// Stay online until interrupted (Ctrl-C): print messages as they arrive, and when the
        /// connection drops, say so and reconnect by itself. With --json, one object a line.
        #[arg(long)]
        follow: bool,
    },
    /// Show the history kept on this device: every conversation, or one (by name or id).
    ///
    /// Your own messages show ✓ when the server took them, ✓✓ when a device of the recipient
    /// received them, and "read" once they were read.
    History {
        /// A conversation's name or id; all conversations when left out.
        conversation: Option<String>,
        /// How many of the latest messages to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Open the chat window: conversations on the left, messages on the right, type below.
    ///
    /// Keys: Enter sends, Esc clears the line, Tab / Shift-Tab (or Ctrl-↓ / Ctrl-↑) switch
    /// conversation, PgUp / PgDn scroll, ↑ on an empty line picks a message (then d downloads
    /// its attachment, r reacts to it), F1 (or ? on an empty line) shows every key, Ctrl-C
    /// quits. Commands: /react EMOJI, /msg @someone TEXT, /file PATH, /download, /quit.
    ///
    /// Calls: an incoming call shows a banner: Ctrl-Y accepts, Ctrl-X declines (it rings for
    /// up to a minute). /call calls the person of the 1:1 on screen, /call @someone anyone;
    /// during a call a bar shows how long it has lasted and Ctrl-X hangs up (quitting does
    /// too). /calls shows the call log; missed calls and call requests are counted in the
    /// status bar until then. Calls use the default microphone and speaker; without a sound server
    /// they send silence (the status bar says so). Messages keep arriving and can be sent
    /// during a call.
    ///
    /// New messages appear as they arrive; the conversation on screen is marked read, which
    /// sends read receipts. If the connection drops, it reconnects by itself.
    Chat {
        /// Open this conversation first (a name or id, see `conversations`); by default the
        /// most recently active.
        conversation: Option<String>,
    },
    /// Measure delivery throughput, latency and memory per idle device against a fresh server.
    Bench(bench::BenchArgs),
    /// Run an attack campaign and an ordinary population against Sentinel, in virtual time,
    /// and print what it caught: precision, recall, time to detect, targets that rang, and
    /// targets whose device processed anything of the attackers'. Scenario files are in
    /// scenarios/ (the default one is built in).
    Sim(sim::SimArgs),
    /// Run only the TURN relay for calls (on a separate host), sharing the server's secret.
    ///
    /// `rampart serve` already starts one beside itself; use this to move media off the
    /// signaling host. Point the server at it with `[calls] relays = ["HOST:3478"]` and give
    /// both the same secret file (`relay_secret_file`). coturn works in its place too
    /// (`use-auth-secret`, `static-auth-secret` = the file's contents).
    Relay(serve::RelayArgs),
    /// Call a person (voice, end-to-end encrypted, through the server's relay).
    ///
    /// Their devices ring only if you are one of their contacts (or they allow everyone);
    /// nothing of the call reaches their device before they accept. Media goes through the
    /// relay only, so neither side learns the other's IP address.
    ///
    /// You talk through the default microphone and speaker (`rampart audio devices` lists
    /// them; --input and --output choose others). For scripts, --play and --record use WAV
    /// files instead.
    ///
    /// With --video the call is a video call: for now the pictures come from a .y4m clip
    /// (--video-play) and the other side's can be saved (--video-record); a camera and
    /// pictures in the terminal are not there yet.
    ///
    /// Example: rampart call @bob --play greeting.wav --record reply.wav --duration 30
    ///
    /// Example: rampart call @bob --video-play clip.y4m --video-record bob.y4m --duration 30
    Call {
        /// +14155550123 or @username.
        to: String,
        #[command(flatten)]
        audio: CallAudioArgs,
        #[command(flatten)]
        video: CallVideoArgs,
        /// Hang up after this many seconds of talking (default: when the other side does, or
        /// `rampart hangup`).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Wait for the next incoming call that may ring this device, accept it, and talk
    /// (default microphone and speaker, as `call`).
    Answer {
        #[command(flatten)]
        audio: CallAudioArgs,
        #[command(flatten)]
        video: CallVideoArgs,
        /// Give up if no call rings within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u64,
        /// Hang up after this many seconds of talking.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Hang up the call in progress on this profile (started by `call` or `answer`).
    Hangup,
    /// The microphones and speakers calls can use.
    #[command(subcommand)]
    Audio(AudioCommand),
    /// The cameras video calls can use.
    #[command(subcommand)]
    Video(VideoCommand),
    /// The call log: calls made and received, missed calls, and call requests from people who
    /// are not your contacts (they did not ring).
    Calls {
        /// How many of the latest calls to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Who may make this device ring: everyone, contacts (default: people you saved or wrote
    /// to), or nobody. Without an argument, shows the current setting.
    RingPolicy {
        #[arg(value_parser = ["everyone", "contacts", "nobody"])]
        policy: Option<String>,
    },
    /// Save someone as a contact: they may ring this device, and conversations they start
    /// open at once instead of waiting as requests.
    AddContact {
        /// +14155550123 or @username.
        who: String,
    },
    /// Conversations started by people who are not your contacts. Nothing of them is opened
    /// (not even decrypted) until you accept; then they open with everything they held.
    /// Without a subcommand, lists them.
    Requests {
        #[command(subcommand)]
        action: Option<RequestCommand>,
    },
    /// Block someone (+E164, @username, or a request): the server delivers nothing more from
    /// them to you (messages, invitations, calls), and their requests are declined. Without an
    /// argument, lists whom you blocked.
    Block { who: Option<String> },
    /// Lift a block.
    Unblock { who: String },
    /// Who may start a conversation with you: everyone; requests (default: contacts directly,
    /// anyone else as a request you accept or decline); or contacts (others are dropped
    /// unseen). Without an argument, shows the current setting.
    MessagePolicy {
        #[arg(value_parser = ["everyone", "requests", "contacts"])]
        policy: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// List open requests (the default).
    List,
    /// Open the conversation: its sender becomes a contact, and what it held is decrypted and
    /// shown, in order.
    Accept {
        /// The request's id (6+ characters of it are enough) or its sender (@name, +number).
        which: String,
    },
    /// Delete it unopened and leave the conversation.
    Decline { which: String },
    /// Decline it and block its sender.
    Block { which: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group: `rampart group create Friends --members @bob,+14155550123`.
    Create {
        name: String,
        /// Comma-separated members (+E164 or @username).
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
    /// Add people to a group you created.
    Add {
        group: String,
        #[arg(value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
    /// Remove people from a group you created.
    Remove {
        group: String,
        #[arg(value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
    /// Leave a group; its other members stop including your devices.
    Leave { group: String },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Encrypt the profile (keys, messages, attachment keys) under a passphrase, or change it.
    ///
    /// The key is derived with Argon2id; both databases become SQLCipher files. Every later
    /// command asks for the passphrase (or reads RAMPART_PASSPHRASE / --passphrase-file).
    /// The new passphrase is asked twice, or read from RAMPART_NEW_PASSPHRASE.
    Encrypt,
    /// Store the profile in the clear again (asks for the current passphrase).
    Decrypt,
    /// Show where the profile is and whether it is encrypted.
    Status,
}

/// Where a call's audio comes from and goes (`call` and `answer`).
#[derive(Debug, clap::Args)]
pub struct CallAudioArgs {
    /// Microphone (an input's name, or "default").
    #[arg(long, value_name = "DEVICE", default_value = "default")]
    pub input: String,
    /// Speaker or headset (an output's name, or "default").
    #[arg(long, value_name = "DEVICE", default_value = "default")]
    pub output: String,
    /// Send the microphone as it is: no echo cancellation, noise suppression or gain control
    /// (a headset, or a device that does them itself).
    #[arg(long)]
    pub raw_microphone: bool,
    /// Send this WAV file (any rate, mono or stereo; resampled to 48 kHz mono), then silence,
    /// instead of the microphone.
    #[arg(long, value_name = "FILE.wav")]
    pub play: Option<PathBuf>,
    /// Save what the other side says to this WAV file (48 kHz mono) when the call ends.
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
}

/// A call's video (`call` and `answer`).
#[derive(Debug, clap::Args)]
pub struct CallVideoArgs {
    /// Make it a video call (`call`), or send video back (`answer`; a callee always receives
    /// the video its caller sends), from the camera (`rampart video devices` lists them) or
    /// from --video-play.
    #[arg(long)]
    pub video: bool,
    /// The camera to send (a /dev/video* device); implies --video. Default: the first camera
    /// that can send YUYV.
    #[arg(long, value_name = "DEVICE", conflicts_with = "video_play")]
    pub camera: Option<PathBuf>,
    /// Send this .y4m clip (4:2:0, up to 1920x1080), looped, as your video; implies --video.
    /// Make one with: ffmpeg -i in.mp4 -pix_fmt yuv420p -s 640x480 clip.y4m
    #[arg(long, value_name = "FILE.y4m")]
    pub video_play: Option<PathBuf>,
    /// Save the other side's video to this .y4m file (written as it arrives); with `call`,
    /// implies --video.
    #[arg(long, value_name = "FILE.y4m")]
    pub video_record: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AudioCommand {
    /// List inputs (microphones) and outputs (speakers, headsets); the default is marked.
    Devices,
    /// Hear yourself: what the microphone picks up plays on the speaker, slightly delayed,
    /// for a few seconds.
    Test {
        #[arg(long, value_name = "DEVICE", default_value = "default")]
        input: String,
        #[arg(long, value_name = "DEVICE", default_value = "default")]
        output: String,
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum VideoCommand {
    /// List the cameras (Video4Linux2 capture devices) and whether a call can use them.
    Devices,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show verification codes waiting in the embedded verifier's outbox.
    Outbox(serve::StoreArgs),
    /// Accounts whose call requests did not fit the call schema, most first, with the reasons:
    /// the evidence of a look-alike client probing call set-up (kept across restarts, shared
    /// by every node on PostgreSQL).
    CallMisfits(serve::StoreArgs),
    /// The evidence log: every decision the server took against an account (refused call
    /// set-ups, and Sentinel's actions), hash-chained and signed by the server's key.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Sentinel: the actions its policy took against accounts and networks (and lifting them),
    /// checking a policy file, and investigating a campaign (clusters, notices to its targets,
    /// signed case files and STIX exports).
    #[command(subcommand)]
    Sentinel(sentinel_cmds::SentinelCommand),
    /// The operator console's operators: who may sign in to the web pages (overview, clusters,
    /// actions with undo, evidence, exports) served on [console] listen.
    #[command(subcommand)]
    Console(console_cmds::ConsoleCommand),
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Check the log: each entry's hash and signature, their order and links, and that the log
    /// ends where its signed head says. An edited, cut or reordered log fails, naming the line.
    Verify(evidence_cmds::VerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Ask for a verification code for a phone number.
    ///
    /// The server pins on first contact: its certificate fingerprint is stored in the profile
    /// and a changed certificate is refused later. Compare it with the one the server printed
    /// at start-up, or pass it with --trust.
    Register {
        /// Server address, e.g. https://chat.example.org:8443
        #[arg(long, env = "RAMPART_SERVER")]
        server: String,
        /// Your phone number in E.164 form, e.g. +14155550123
        #[arg(long)]
        phone: String,
        /// Optional @username so people can reach you without your number.
        #[arg(long)]
        username: Option<String>,
        /// Pin this certificate fingerprint instead of trusting on first use.
        #[arg(long, value_name = "FINGERPRINT")]
        trust: Option<String>,
    },
    /// Enter the code you received; this device becomes the account's first device.
    Verify {
        /// The 6-digit code.
        code: String,
        #[command(flatten)]
        device: DeviceName,
    },
    /// Link this (new) device to an existing account: shows a code to approve on that account's
    /// other device with `rampart devices approve CODE`.
    Link {
        #[arg(long, env = "RAMPART_SERVER")]
        server: String,
        #[command(flatten)]
        device: DeviceName,
        #[arg(long, value_name = "FINGERPRINT")]
        trust: Option<String>,
    },
    /// Show this device's account.
    Whoami,
    /// Set (or --clear) the account's @username.
    Username {
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        clear: bool,
    },
    /// Replace the pinned server certificate fingerprint (after checking it out of band).
    Trust { fingerprint: String },
}

#[derive(Debug, Args)]
pub struct DeviceName {
    /// A name for this device, shown in `rampart devices list`.
    #[arg(long, default_value_t = default_device_name())]
    pub device_name: String,
}

fn default_device_name() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "terminal".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List this account's devices.
    List,
    /// Approve a new device that shows this code (from `rampart account link`):
    /// ABCD-EFGH-KKKK-KKKK-KKKK, all twenty characters. The first eight are the server's link
    /// code; the last twelve check the new device's key, so only that device is certified.
    Approve { code: String },
    /// Revoke a device: it is cut off at once and its queued messages are deleted.
    Revoke { device_id: u64 },
}

/// The command line, with each command's help showing only the options it uses: the client's
/// `--profile` and `--passphrase-file` are global for the client commands, and hidden (still
/// accepted, and ignored) on the server, relay, admin, bench, audio and video commands; `--json` likewise on
/// `serve` and `relay`, which print none.
pub fn command() -> clap::Command {
    /// `command` and its subcommands get their own hidden copy of each option in `hidden`, so
    /// clap, which hands a global option only to subcommands without one of the same name,
    /// keeps the visible one out of their help.
    fn hide(command: clap::Command, hidden: &[clap::Arg]) -> clap::Command {
        let command = hidden.iter().fold(command, |c, a| c.arg(a.clone()));
        command.mut_subcommands(|nested| hide(nested, hidden))
    }
    let command = <Cli as clap::CommandFactory>::command();
    let copy = |id: &str| {
        command.get_arguments().find(|a| a.get_id() == id).map(|a| a.clone().global(false).hide(true))
    };
    let client_only: Vec<clap::Arg> = ["profile", "passphrase_file"].into_iter().filter_map(copy).collect();
    let with_json: Vec<clap::Arg> =
        ["profile", "passphrase_file", "json"].into_iter().filter_map(copy).collect();
    command
        .clone()
        .mut_subcommand("serve", |c| hide(c, &with_json))
        .mut_subcommand("relay", |c| hide(c, &with_json))
        .mut_subcommand("admin", |c| hide(c, &client_only))
        .mut_subcommand("bench", |c| hide(c, &client_only))
        .mut_subcommand("audio", |c| hide(c, &client_only))
        .mut_subcommand("video", |c| hide(c, &client_only))
}

/// Parse the process's arguments (exits with clap's message on an error or `--help`).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Admin(AdminCommand::Outbox(args)) => serve::outbox(args, cli.json).await,
        Command::Admin(AdminCommand::CallMisfits(args)) => serve::call_misfits(args, cli.json).await,
        Command::Admin(AdminCommand::Sentinel(command)) => sentinel_cmds::run(command, cli.json).await,
        Command::Admin(AdminCommand::Console(command)) => console_cmds::run(command, cli.json),
        Command::Admin(AdminCommand::Evidence(EvidenceCommand::Verify(args))) => {
            evidence_cmds::verify(args, cli.json).await
        }
        Command::Bench(args) => bench::run(args, cli.json).await,
        Command::Sim(args) => sim::run(args, cli.json),
        Command::Relay(args) => serve::relay(args).await,
        // The sound server, not a profile.
        Command::Audio(action) => crate::call_cmds::audio(action, cli.json).await,
        // The machine's cameras, not a profile.
        Command::Video(VideoCommand::Devices) => crate::call_cmds::cameras(cli.json),
        other => client_cmds::run(other, cli.profile, cli.passphrase_file, cli.json).await,
    }
}
