//! `rampart call`, `answer`, `hangup`, `calls`, `ring-policy` and `add-contact`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rampart_client::Client;
use rampart_client::call::audio_device::{self, DeviceChoice, Microphone, Speaker};
use rampart_client::call::camera::{self, CameraSpec};
use rampart_client::call::video::{CallVideo, VideoClip, VideoSource};
use rampart_client::call::{CallLimits, CallMedia, CallProgress, CallReport};
use rampart_core::call::RingPolicy;
use serde_json::json;

/// Where `rampart hangup` leaves word for the running call.
fn hangup_file(client: &Client) -> PathBuf {
    client.profile().dir().join("call.hangup")
}

/// The call's audio: the chosen devices, with WAV files in place of the microphone (`--play`)
/// and beside the speaker (`--record`); and its video, if any.
pub fn media(args: crate::cli::CallAudioArgs, video: crate::cli::CallVideoArgs) -> anyhow::Result<CallMedia> {
    let crate::cli::CallAudioArgs { input, output, raw_microphone, play, record } = args;
    let crate::cli::CallVideoArgs { video, camera, video_play, video_record } = video;
    let send = match (video_play, camera) {
        (Some(path), _) => Some(VideoSource::Clip(VideoClip::load(&path)?)),
        (None, Some(device)) => {
            Some(VideoSource::Camera(CameraSpec { device: Some(device), ..CameraSpec::default() }))
        }
        (None, None) if video => {
            // Said now, before anyone rings: a camera that fails later leaves the call with audio.
            if !camera::cameras().iter().any(|c| c.usable) {
                anyhow::bail!(
                    "no camera that Rampart can use was found (`rampart video devices` lists them); \
                     send a clip instead with --video-play FILE.y4m"
                );
            }
            Some(VideoSource::Camera(CameraSpec::default()))
        }
        (None, None) => None,
    };
    let video =
        (send.is_some() || video_record.is_some()).then_some(CallVideo { send, record: video_record });
    let play = match play {
        Some(path) => Some(
            rampart_media::wav::read_wav(&path).with_context(|| format!("cannot play {}", path.display()))?,
        ),
        None => None,
    };
    Ok(CallMedia {
        play,
        record,
        input: Some(DeviceChoice::parse(&input)),
        output: Some(DeviceChoice::parse(&output)),
        raw_microphone,
        video,
        controls: Default::default(),
    })
}

/// `rampart video devices`.
pub fn cameras(json: bool) -> anyhow::Result<()> {
    let found = camera::cameras();
    if json {
        outln!("{}", json!({ "ok": true, "cameras": found }));
        return Ok(());
    }
    outln!("Cameras (--camera):");
    if found.is_empty() {
        outln!("  none (no video capture device under /dev/video*)");
    }
    for c in &found {
        let note = if c.usable { "" } else { "  (cannot send YUYV: not usable yet)" };
        outln!("  {}  {}{note}", c.path.display(), c.name);
    }
    Ok(())
}

/// `rampart audio devices` and `rampart audio test`.
pub async fn audio(action: crate::cli::AudioCommand, json: bool) -> anyhow::Result<()> {
    match action {
        crate::cli::AudioCommand::Devices => {
            let devices = audio_device::list().await?;
            if json {
                outln!("{}", json!({ "ok": true, "inputs": devices.inputs, "outputs": devices.outputs }));
                return Ok(());
            }
            for (title, list) in
                [("Inputs (--input)", &devices.inputs), ("Outputs (--output)", &devices.outputs)]
            {
                outln!("{title}:");
                if list.is_empty() {
                    outln!("  none");
                }
                for d in list {
                    let mark = if d.default { "*" } else { " " };
                    outln!("  {mark} {}  {}", d.name, d.description);
                }
            }
            outln!("(* the default)");
            Ok(())
        }
        crate::cli::AudioCommand::Test { input, output, seconds } => {
            let mut microphone = Microphone::open(&DeviceChoice::parse(&input)).await?;
            let speaker = Speaker::open(&DeviceChoice::parse(&output)).await?;
            if !json {
                eprintln!("Speak: you hear yourself for {seconds} s.");
            }
            let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
            let mut frames = 0u64;
            let mut loudest = 0i16;
            while let Ok(Some(frame)) = tokio::time::timeout_at(until, microphone.next()).await {
                loudest = loudest.max(frame.iter().map(|s| s.saturating_abs()).max().unwrap_or(0));
                speaker.play(&frame);
                frames += 1;
            }
            let level_db = 20.0 * (f64::from(loudest.max(1)) / 32768.0).log10();
            if json {
                outln!("{}", json!({ "ok": true, "frames": frames, "peak_dbfs": level_db }));
            } else {
                outln!("{frames} frames from the microphone; loudest peak {level_db:.1} dBFS.");
                if frames == 0 {
                    outln!("Nothing came from the microphone: check --input (rampart audio devices).");
                }
            }
            Ok(())
        }
    }
}

fn limits(client: &Client, duration: Option<u64>) -> CallLimits {
    let hangup = hangup_file(client);
    // A stale request from an earlier call must not end this one.
    let _ = std::fs::remove_file(&hangup);
    CallLimits { duration: duration.map(Duration::from_secs), hangup_file: Some(hangup), hangup_flag: None }
}

fn print_report(report: &CallReport, record: Option<&Path>, json: bool) {
    if json {
        outln!("{}", json!({ "ok": true, "call": report }));
        return;
    }
    outln!("Call with {}: {} ({}).", report.peer, report.outcome, report.detail);
    if report.media_ms > 0 {
        let frames = report.frames_decoded + report.frames_concealed;
        let lost = if frames == 0 { 0.0 } else { 100.0 * report.frames_concealed as f64 / frames as f64 };
        outln!(
            "  {:.1} s of media through relay {}: {} frames sent, {} received, {:.1}% concealed",
            report.media_ms as f64 / 1000.0,
            report.relay,
            report.frames_sent,
            report.frames_decoded,
            lost
        );
    }
    if !report.audio.is_empty() {
        outln!("  audio: {}", report.audio);
    }
    if let Some(path) = record {
        outln!("  recorded {} frames to {}", report.frames_recorded, path.display());
    }
    if let Some(video) = &report.video {
        outln!("  video: {}", video.summary);
        if video.frames_sent + video.frames_received > 0 {
            outln!(
                "  video: {} pictures sent ({} keyframes, {:.0} kbit/s at the end), {} received                  ({} keyframe requests, {} frozen {:.1} s)",
                video.frames_sent,
                video.keyframes_sent,
                f64::from(video.bitrate_bps) / 1000.0,
                video.frames_received,
                video.keyframe_requests_sent,
                video.freezes,
                video.freeze_ms as f64 / 1000.0,
            );
        }
    }
}

fn progress(json: bool) -> impl FnMut(&CallProgress) + Send {
    move |step: &CallProgress| {
        if !json {
            eprintln!("{step}");
        }
    }
}

pub async fn call(
    client: &mut Client,
    to: &str,
    media: CallMedia,
    duration: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let record = media.record.clone();
    let limits = limits(client, duration);
    let report = client.call(to, media, limits, &mut progress(json)).await?;
    print_report(&report, record.as_deref(), json);
    Ok(())
}

pub async fn answer(
    client: &mut Client,
    media: CallMedia,
    wait: u64,
    duration: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let record = media.record.clone();
    let limits = limits(client, duration);
    if !json {
        eprintln!("waiting up to {wait} s for a call…");
    }
    let report = client.answer(Duration::from_secs(wait), media, limits, &mut progress(json)).await?;
    print_report(&report, record.as_deref(), json);
    Ok(())
}

pub fn hangup(client: &Client, json: bool) -> anyhow::Result<()> {
    let path = hangup_file(client);
    std::fs::write(&path, b"hang up\n").with_context(|| format!("cannot write {}", path.display()))?;
    if json {
        outln!("{}", json!({ "ok": true }));
    } else {
        outln!("Asked the call on this profile to hang up.");
    }
    Ok(())
}

pub fn calls(client: &Client, limit: u32, json: bool) -> anyhow::Result<()> {
    let log = client.profile().call_log(limit)?;
    if json {
        outln!("{}", json!({ "ok": true, "calls": log }));
        return Ok(());
    }
    if log.is_empty() {
        outln!("No calls yet. Call someone with: rampart call @someone");
        return Ok(());
    }
    for c in log {
        let arrow = if c.outgoing { "→" } else { "←" };
        let when = rampart_client::human_duration(
            u32::try_from(rampart_client::clock::now_ms().saturating_sub(c.started_at_ms) / 1000)
                .unwrap_or(u32::MAX),
        );
        let length = if c.duration_secs() > 0 { format!(" {} s", c.duration_secs()) } else { String::new() };
        let outcome = match c.outcome.as_str() {
            "request" => "call request (not a contact; did not ring)".to_owned(),
            other => other.to_owned(),
        };
        outln!("{arrow} {:<24} {outcome}{length}  ({when} ago)", c.peer);
    }
    Ok(())
}

pub fn ring_policy(client: &Client, policy: Option<String>, json: bool) -> anyhow::Result<()> {
    if let Some(p) = policy {
        let p = RingPolicy::parse(&p).context("the policy is everyone, contacts or nobody")?;
        client.profile().set_ring_policy(p)?;
    }
    let p = client.profile().ring_policy()?;
    if json {
        outln!("{}", json!({ "ok": true, "ring_policy": p.as_str() }));
    } else {
        let who = match p {
            RingPolicy::Everyone => "anyone",
            RingPolicy::Contacts => "only your contacts (people you saved or wrote to)",
            RingPolicy::Nobody => "nobody",
        };
        outln!("Calls from {who} make this device ring; others show up as call requests in `rampart calls`.");
    }
    Ok(())
}

pub async fn add_contact(client: &mut Client, who: &str, json: bool) -> anyhow::Result<()> {
    let label = client.add_contact(who).await?;
    if json {
        outln!("{}", json!({ "ok": true, "contact": label }));
    } else {
        outln!(
            "Saved {} as a contact: their calls ring this device and their conversations open without a request.",
            crate::client_cmds::printable(&label)
        );
    }
    Ok(())
}
