//! The computer's microphone and speaker for calls, through the sound server: PulseAudio, or
//! the PulseAudio service of PipeWire on current Linux desktops. Audio is 48 kHz mono 16-bit,
//! in the 20 ms frames the call pipeline works in; the sound server converts from and to what
//! the hardware wants.
//!
//! The sound server is reached over its local socket with `pulseaudio`, a Rust implementation
//! of its protocol, so the build links no C library and a machine without a sound server
//! simply has no devices: calls then send silence, as before. Only the local user's choices
//! (which device) reach this module; nothing from the network does.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::{Arc, Mutex, PoisonError};

use pulseaudio::protocol;
use rampart_media::{FRAME_SAMPLES, Frame, SAMPLE_RATE};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

/// Captured frames waiting to be sent: beyond 10 (200 ms) new ones are dropped, and
/// [`Microphone::next`] skips what piled up, so a stalled sender never builds up delay.
const MAX_CAPTURED_FRAMES: usize = 10;
/// Samples waiting to be played: beyond 200 ms the oldest go, for the same reason.
const MAX_QUEUED_SAMPLES: usize = 10 * FRAME_SAMPLES;
/// What the sound server is asked to buffer: one frame for capture, three for playback.
const FRAME_BYTES: u32 = (FRAME_SAMPLES * 2) as u32;

/// Why a device could not be used.
#[derive(Debug, Error)]
pub enum AudioError {
    #[error("no sound server (PulseAudio or PipeWire) is reachable: {0}")]
    Unavailable(String),
    #[error("no {kind} named {name:?} (rampart audio devices lists them)")]
    NoSuchDevice { kind: &'static str, name: String },
    #[error("the sound server refused: {0}")]
    Server(String),
}

impl From<pulseaudio::ClientError> for AudioError {
    fn from(error: pulseaudio::ClientError) -> Self {
        Self::Server(error.to_string())
    }
}

/// Which device: the sound server's default, or one by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    Default,
    Named(String),
}

impl DeviceChoice {
    /// "default" (any case) is the default device; anything else names one.
    pub fn parse(text: &str) -> Self {
        if text.eq_ignore_ascii_case("default") { Self::Default } else { Self::Named(text.to_owned()) }
    }
}

/// One input or output device.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub name: String,
    pub description: String,
    pub default: bool,
}

/// What the sound server offers.
#[derive(Debug, Clone, Serialize)]
pub struct Devices {
    pub inputs: Vec<Device>,
    pub outputs: Vec<Device>,
}

/// How long the sound server may take to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long opening a stream may take.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to the sound server. The library's handshake blocks, so it runs on a blocking
/// thread, and a server that does not answer is given up on.
async fn connect(purpose: &'static std::ffi::CStr) -> Result<pulseaudio::Client, AudioError> {
    let handshake = tokio::task::spawn_blocking(move || handshake(purpose));
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(Ok(client))) => Ok(client),
        Ok(Ok(Err(e))) => Err(AudioError::Unavailable(e.to_string())),
        Ok(Err(e)) => Err(AudioError::Unavailable(e.to_string())),
        Err(_) => Err(AudioError::Unavailable("the sound server did not answer".into())),
    }
}

/// Bytes of PulseAudio's authentication cookie.
const COOKIE_BYTES: usize = 256;

/// Finds the server as libpulse does (`PULSE_SERVER`, then the user's runtime directory) and
/// authenticates with the user's cookie. Without a cookie file (a fresh account, a container)
/// libpulse makes one up; the library would send none, which a server refuses as a protocol
/// error even when it lets anyone in, so a made-up (zero) cookie is sent instead.
fn handshake(purpose: &std::ffi::CStr) -> Result<pulseaudio::Client, pulseaudio::ClientError> {
    let socket_path = pulseaudio::socket_path_from_env().ok_or(pulseaudio::ClientError::ServerUnavailable)?;
    let cookie = pulseaudio::cookie_path_from_env()
        .and_then(|path| std::fs::read(path).ok())
        .filter(|cookie| cookie.len() == COOKIE_BYTES)
        .unwrap_or_else(|| vec![0; COOKIE_BYTES]);
    let socket = std::os::unix::net::UnixStream::connect(socket_path)?;
    pulseaudio::Client::new_unix(purpose, socket, Some(cookie))
}

/// `what` within [`OPEN_TIMEOUT`].
async fn within<T>(
    what: impl std::future::Future<Output = Result<T, pulseaudio::ClientError>>,
) -> Result<T, AudioError> {
    match tokio::time::timeout(OPEN_TIMEOUT, what).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(AudioError::Server("no answer".into())),
    }
}

fn text(name: &CString) -> String {
    name.to_string_lossy().into_owned()
}

/// The sound server's inputs (microphones, and the monitors of outputs) and outputs.
pub async fn list() -> Result<Devices, AudioError> {
    let client = connect(c"rampart").await?;
    let info = within(client.server_info()).await?;
    let default_input = info.default_source_name.as_ref().map(text);
    let default_output = info.default_sink_name.as_ref().map(text);
    let inputs = within(client.list_sources())
        .await?
        .into_iter()
        .map(|s| Device {
            default: Some(text(&s.name)) == default_input,
            description: s.description.as_ref().map(text).unwrap_or_default(),
            name: text(&s.name),
        })
        .collect();
    let outputs = within(client.list_sinks())
        .await?
        .into_iter()
        .map(|s| Device {
            default: Some(text(&s.name)) == default_output,
            description: s.description.as_ref().map(text).unwrap_or_default(),
            name: text(&s.name),
        })
        .collect();
    Ok(Devices { inputs, outputs })
}

fn sample_spec() -> protocol::SampleSpec {
    protocol::SampleSpec { format: protocol::SampleFormat::S16Le, channels: 1, sample_rate: SAMPLE_RATE }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Input,
    Output,
}

/// A connection for one stream, and the name of the device it is for (checked to exist when
/// the user named one, so a typo is an error that says so).
async fn open_device(
    choice: &DeviceChoice,
    direction: Direction,
) -> Result<(pulseaudio::Client, CString), AudioError> {
    let (purpose, default, kind) = match direction {
        Direction::Input => (c"rampart call (microphone)", protocol::DEFAULT_SOURCE, "input"),
        Direction::Output => (c"rampart call (speaker)", protocol::DEFAULT_SINK, "output"),
    };
    let client = connect(purpose).await?;
    let DeviceChoice::Named(wanted) = choice else { return Ok((client, default.to_owned())) };
    let missing = || AudioError::NoSuchDevice { kind, name: wanted.clone() };
    let name = CString::new(wanted.as_bytes()).map_err(|_| missing())?;
    let found = match direction {
        Direction::Input => within(client.source_info_by_name(name.clone())).await.map(|_| ()),
        Direction::Output => within(client.sink_info_by_name(name.clone())).await.map(|_| ()),
    };
    found.map_err(|_| missing())?;
    Ok((client, name))
}

/// Cuts the byte stream of a capture into whole frames.
#[derive(Debug, Default)]
struct FrameCutter {
    pending: Vec<i16>,
    odd_byte: Option<u8>,
}

impl FrameCutter {
    fn push(&mut self, bytes: &[u8], mut frame_done: impl FnMut(Frame)) {
        let mut bytes = bytes.iter().copied();
        if let Some(low) = self.odd_byte.take() {
            match bytes.next() {
                Some(high) => self.pending.push(i16::from_le_bytes([low, high])),
                None => {
                    self.odd_byte = Some(low);
                    return;
                }
            }
        }
        loop {
            match (bytes.next(), bytes.next()) {
                (Some(low), Some(high)) => self.pending.push(i16::from_le_bytes([low, high])),
                (Some(low), None) => {
                    self.odd_byte = Some(low);
                    break;
                }
                _ => break,
            }
        }
        while self.pending.len() >= FRAME_SAMPLES {
            let rest = self.pending.split_off(FRAME_SAMPLES);
            let whole = std::mem::replace(&mut self.pending, rest);
            if let Ok(frame) = Frame::try_from(whole.as_slice()) {
                frame_done(frame);
            }
        }
    }
}

/// A microphone (or any input) delivering 20 ms frames.
pub struct Microphone {
    frames: mpsc::Receiver<Frame>,
    _stream: pulseaudio::RecordStream,
    _client: pulseaudio::Client,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone").finish_non_exhaustive()
    }
}

impl Microphone {
    pub async fn open(choice: &DeviceChoice) -> Result<Self, AudioError> {
        let (client, name) = open_device(choice, Direction::Input).await?;
        let (sender, frames) = mpsc::channel(MAX_CAPTURED_FRAMES);
        let mut cutter = FrameCutter::default();
        let sink = move |bytes: &[u8]| {
            cutter.push(bytes, |frame| {
                // Full: the sender is behind; this frame is dropped rather than delayed.
                let _ = sender.try_send(frame);
            });
        };
        let params = protocol::RecordStreamParams {
            sample_spec: sample_spec(),
            channel_map: protocol::ChannelMap::mono(),
            source_name: Some(name),
            buffer_attr: protocol::stream::BufferAttr { fragment_size: FRAME_BYTES, ..Default::default() },
            flags: protocol::stream::StreamFlags { adjust_latency: true, ..Default::default() },
            ..Default::default()
        };
        let stream = within(client.create_record_stream(params, sink)).await?;
        Ok(Self { frames, _stream: stream, _client: client })
    }

    /// The oldest captured frame not taken yet.
    pub fn take(&mut self) -> Option<Frame> {
        self.frames.try_recv().ok()
    }

    /// The next captured frame, waiting for it. Frames that piled up (the sender fell behind)
    /// are skipped down to the last two, so a stall costs a glitch, not lasting delay.
    pub async fn next(&mut self) -> Option<Frame> {
        let mut frame = self.frames.recv().await?;
        while self.frames.len() >= 2 {
            match self.frames.try_recv() {
                Ok(newer) => frame = newer,
                Err(_) => break,
            }
        }
        Some(frame)
    }
}

/// A speaker (or any output) playing 20 ms frames; silence when none are queued.
pub struct Speaker {
    queue: Arc<Mutex<VecDeque<i16>>>,
    _stream: pulseaudio::PlaybackStream,
    _client: pulseaudio::Client,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker").finish_non_exhaustive()
    }
}

impl Speaker {
    pub async fn open(choice: &DeviceChoice) -> Result<Self, AudioError> {
        use pulseaudio::AsPlaybackSource as _;
        let (client, name) = open_device(choice, Direction::Output).await?;
        let queue: Arc<Mutex<VecDeque<i16>>> = Arc::default();
        let playing = Arc::clone(&queue);
        let source = move |buffer: &mut [u8]| {
            let mut queue = playing.lock().unwrap_or_else(PoisonError::into_inner);
            for pair in buffer.chunks_exact_mut(2) {
                // Underrun: silence, never a stop (the stream would end).
                let sample = queue.pop_front().unwrap_or(0);
                pair.copy_from_slice(&sample.to_le_bytes());
            }
            buffer.len() - buffer.len() % 2
        };
        let params = protocol::PlaybackStreamParams {
            sample_spec: sample_spec(),
            channel_map: protocol::ChannelMap::mono(),
            sink_name: Some(name),
            buffer_attr: protocol::stream::BufferAttr {
                target_length: 3 * FRAME_BYTES,
                minimum_request_length: FRAME_BYTES,
                pre_buffering: FRAME_BYTES,
                ..Default::default()
            },
            flags: protocol::stream::StreamFlags { adjust_latency: true, ..Default::default() },
            ..Default::default()
        };
        let stream = within(client.create_playback_stream(params, source.as_playback_source())).await?;
        Ok(Self { queue, _stream: stream, _client: client })
    }

    /// Queues a frame to play.
    pub fn play(&self, frame: &Frame) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.extend(frame.iter().copied());
        let excess = queue.len().saturating_sub(MAX_QUEUED_SAMPLES);
        queue.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn bytes_become_whole_frames_however_they_are_split() {
        let samples: Vec<i16> = (0..3 * FRAME_SAMPLES as i32).map(|i| (i % 30_000) as i16 - 15_000).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for piece in [1, 3, 960, 1921, bytes.len()] {
            let mut cutter = FrameCutter::default();
            let mut frames = Vec::new();
            for chunk in bytes.chunks(piece) {
                cutter.push(chunk, |f| frames.push(f));
            }
            assert_eq!(frames.len(), 3, "piece {piece}");
            assert_eq!(frames.concat(), samples, "piece {piece}");
        }
    }

    #[test]
    fn default_is_a_word_not_a_device() {
        assert_eq!(DeviceChoice::parse("default"), DeviceChoice::Default);
        assert_eq!(DeviceChoice::parse("Default"), DeviceChoice::Default);
        assert_eq!(DeviceChoice::parse("alsa_input.usb"), DeviceChoice::Named("alsa_input.usb".into()));
    }
}
