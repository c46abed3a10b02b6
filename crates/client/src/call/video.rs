//! A call's video on this device: the clip it sends, the file it records, and the task that
//! runs both ends of the video stream (`rampart_media::video`) over the call's relay
//! allocation, beside the audio.
//!
//! Video is set up like audio and under the same rules: nothing of it exists before the
//! machine's `MediaPermit`; it goes through the relay only; its SRTP keys are the audio's
//! direction keys (from the MLS exporter), under the video stream's own SSRC, named in the
//! offer and the answer. A callee whose caller offers video receives it (the user accepted the
//! call); it sends video only if asked to.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_media::pipeline::{DatagramKind, classify};
use rampart_media::video::y4m::{Y4mHeader, Y4mReader, Y4mWriter};
use rampart_media::video::{Pacer, VIDEO_CLOCK_HZ, VideoFrame, VideoReceiver, VideoSender};
use rampart_relay::TurnClient;
use serde::Serialize;

use super::CallControls;
use super::camera::{Camera, CameraError, CameraSpec};
use crate::error::ClientError;

/// A clip held in memory is at most this large (about 5 s of 640x480); longer files are cut.
const MAX_CLIP_BYTES: usize = 64 << 20;
/// Feedback (NACKs, keyframe requests, reports) goes out at most this often.
const FEEDBACK_TICK: Duration = Duration::from_millis(20);
/// Decoded pictures waiting for the recorder; more are dropped (and counted).
const RECORD_QUEUE: usize = 8;

/// Frames to send as this side's video, looped.
#[derive(Debug, Clone)]
pub struct VideoClip {
    pub frames: Arc<Vec<VideoFrame>>,
    pub fps: f64,
}

impl VideoClip {
    /// Reads a `.y4m` file (4:2:0), up to [`MAX_CLIP_BYTES`] of frames.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ClientError::Input(format!("cannot open {}: {e}", path.display())))?;
        let reader = Y4mReader::new(BufReader::new(file))
            .map_err(|e| ClientError::Input(format!("{}: {e}", path.display())))?;
        let header = reader.header();
        let per_frame = rampart_media::video::frame::i420_len(header.width, header.height);
        let (header, frames) = reader
            .read_all((MAX_CLIP_BYTES / per_frame.max(1)).max(1))
            .map_err(|e| ClientError::Input(format!("{}: {e}", path.display())))?;
        if frames.is_empty() {
            return Err(ClientError::Input(format!("{} holds no frames", path.display())));
        }
        Ok(Self { frames: Arc::new(frames), fps: header.fps().clamp(1.0, 60.0) })
    }
}

/// Where this side's pictures come from.
#[derive(Debug, Clone)]
pub enum VideoSource {
    /// A clip, looped (tests, scripts, or a camera-less machine).
    Clip(VideoClip),
    /// A camera, opened when media starts.
    Camera(CameraSpec),
}

impl From<VideoClip> for VideoSource {
    fn from(clip: VideoClip) -> Self {
        VideoSource::Clip(clip)
    }
}

/// A source opened for a call.
#[derive(Debug)]
pub(crate) enum Pictures {
    Clip(VideoClip),
    Camera(Camera),
}

impl VideoSource {
    pub(crate) fn open(self) -> Result<Pictures, CameraError> {
        Ok(match self {
            VideoSource::Clip(clip) => Pictures::Clip(clip),
            VideoSource::Camera(spec) => Pictures::Camera(Camera::open(&spec)?),
        })
    }
}

impl Pictures {
    pub(crate) fn fps(&self) -> f64 {
        match self {
            Pictures::Clip(clip) => clip.fps,
            Pictures::Camera(camera) => camera.fps,
        }
    }

    /// The next picture to send, `sent` having gone before: a clip's next frame (looped), or
    /// the camera's newest (none when the camera has sent nothing new since the last one).
    /// `Err` once the camera stopped.
    fn next(&mut self, sent: u64) -> Result<Option<std::borrow::Cow<'_, VideoFrame>>, String> {
        match self {
            Pictures::Clip(clip) => {
                let at = (sent % clip.frames.len().max(1) as u64) as usize;
                Ok(clip.frames.get(at).map(std::borrow::Cow::Borrowed))
            }
            Pictures::Camera(camera) => match camera.failure() {
                Some(why) => Err(format!("the camera stopped: {why}")),
                None => Ok(camera.take_picture().map(std::borrow::Cow::Owned)),
            },
        }
    }

    /// Pictures come in real time (a camera), not at a fixed rate (a clip).
    fn is_live(&self) -> bool {
        matches!(self, Pictures::Camera(_))
    }

    fn describe(&self) -> String {
        match self {
            Pictures::Clip(clip) => {
                format!("sending a clip of {} frames at {:.0} fps", clip.frames.len(), clip.fps)
            }
            Pictures::Camera(c) => {
                format!("sending the camera {:?} at {}x{}, {:.0} fps", c.name, c.width, c.height, c.fps)
            }
        }
    }
}

/// This side's video in a call: what it sends (nothing: receive only) and where the other
/// side's pictures are written.
#[derive(Debug, Clone, Default)]
pub struct CallVideo {
    pub send: Option<VideoSource>,
    /// A `.y4m` file for the other side's pictures, each marked with its RTP timestamp.
    pub record: Option<PathBuf>,
}

/// How the video of a call went.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VideoReport {
    /// What was sent and where pictures went, or why video did not run.
    pub summary: String,
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub retransmitted: u64,
    pub keyframe_requests_received: u64,
    /// The encoder's bitrate at the end, and how often rate control changed it.
    pub bitrate_bps: u32,
    pub rate_changes: u64,
    pub frames_received: u64,
    pub frames_dropped: u64,
    pub keyframe_requests_sent: u64,
    pub packets_nacked: u64,
    pub freezes: u64,
    pub freeze_ms: u64,
    /// Milliseconds from the start of media to the first picture shown.
    pub first_frame_ms: Option<u64>,
    pub frames_recorded: u64,
    pub width: usize,
    pub height: usize,
    /// The RTP timestamp of the first picture sent (for lining a recording up with the clip).
    pub first_timestamp: Option<u32>,
}

/// The video ends of one call, built once media may flow.
#[derive(Debug)]
pub(crate) struct VideoParts {
    pub sender: Option<(VideoSender, Pictures)>,
    /// Why this side sends no video though it was asked to (the camera could not be opened).
    pub not_sending: Option<String>,
    pub receiver: VideoReceiver,
    pub peer_ssrc: u32,
    pub record: Option<PathBuf>,
    /// Where the latest picture goes for a window to show.
    pub controls: CallControls,
}

/// Whether a datagram belongs to the other side's video stream (its RTP, or its feedback
/// RTCP): by the SSRC in the clear header. Everything else goes to the audio.
pub(crate) fn is_video(datagram: &[u8], peer_video_ssrc: u32) -> bool {
    let ssrc_at = match classify(datagram) {
        DatagramKind::Rtp => 8,
        DatagramKind::Rtcp => 4,
        DatagramKind::Other => return false,
    };
    datagram
        .get(ssrc_at..ssrc_at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .is_some_and(|ssrc| ssrc == peer_video_ssrc)
}

/// Writes decoded pictures to a `.y4m` file on a thread of its own (the file may be slow).
struct Recorder {
    queue: std::sync::mpsc::SyncSender<(VideoFrame, u32)>,
    thread: std::thread::JoinHandle<Result<u64, String>>,
    dropped: u64,
}

impl Recorder {
    fn start(path: PathBuf, fps: u32) -> Self {
        let (queue, pictures) = std::sync::mpsc::sync_channel::<(VideoFrame, u32)>(RECORD_QUEUE);
        let thread = std::thread::spawn(move || {
            let mut writer: Option<Y4mWriter<std::io::BufWriter<std::fs::File>>> = None;
            let mut written = 0u64;
            for (frame, timestamp) in pictures {
                if writer.is_none() {
                    let file =
                        std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    let header = Y4mHeader { width: frame.width(), height: frame.height(), rate: (fps, 1) };
                    writer = Some(
                        Y4mWriter::new(std::io::BufWriter::new(file), header).map_err(|e| e.to_string())?,
                    );
                }
                if let Some(writer) = &mut writer {
                    // A picture of another size (the sender changed resolution) is skipped: a
                    // .y4m file has one size.
                    match writer.write_frame(&frame, Some(&format!("TS={timestamp}"))) {
                        Ok(()) => written += 1,
                        Err(rampart_media::video::y4m::Y4mError::Shape(_)) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            if let Some(writer) = writer {
                writer.finish().map_err(|e| e.to_string())?;
            }
            Ok(written)
        });
        Self { queue, thread, dropped: 0 }
    }

    fn record(&mut self, frame: VideoFrame, timestamp: u32) {
        if self.queue.try_send((frame, timestamp)).is_err() {
            self.dropped += 1;
        }
    }

    async fn finish(self) -> Result<u64, String> {
        drop(self.queue);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the recorder stopped".to_owned())?
    }
}

/// Runs the video of a call until `stopped`: sends the clip's frames at its rate, feeds the
/// other side's datagrams to the receiver, sends its feedback, and answers NACKs.
pub(crate) async fn run_video(
    turn: Arc<TurnClient>,
    peer: SocketAddr,
    parts: VideoParts,
    mut datagrams: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> VideoReport {
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let VideoParts { mut sender, mut receiver, record, controls, not_sending, .. } = parts;
    let mut report = VideoReport::default();
    let fps = sender.as_ref().map_or(30.0, |(_, pictures)| pictures.fps());
    let mut recorder = record.clone().map(|path| Recorder::start(path, fps.round() as u32));
    let mut frame_tick = tokio::time::interval(Duration::from_secs_f64(1.0 / fps));
    frame_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut feedback_tick = tokio::time::interval(FEEDBACK_TICK);
    // Pictures sent; their RTP time is their count at the source's rate (a camera's pictures
    // that the encoder had no time for are skipped, not counted).
    let mut index = 0u64;
    let mut error = None;
    let mut source_failure = None;
    let mut first_picture_ms: Option<u64> = None;
    // Feedback goes out at once; media through the pacer.
    let mut outgoing: Vec<Vec<u8>> = Vec::new();
    let mut pacer = Pacer::new(sender.as_ref().map_or(0, |(video, _)| video.stats().encoder_bps));
    report.first_timestamp = sender.as_ref().map(|(video, _)| video.timestamp_of(0));
    loop {
        let paced =
            pacer.next_ms().map(|at| tokio::time::Instant::from_std(started + Duration::from_millis(at)));
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep_until(paced.unwrap_or_else(tokio::time::Instant::now)), if paced.is_some() => {}
            _ = frame_tick.tick(), if sender.is_some() && source_failure.is_none() => {
                if let Some((video, pictures)) = &mut sender {
                    let (fps, live) = (pictures.fps(), pictures.is_live());
                    match pictures.next(index) {
                        Ok(Some(frame)) => {
                            // A clip's pictures are spaced by its rate; a camera's by when they
                            // came (it may send fewer than the tick asks for, and the receiver
                            // reads delay from these). The RTP clock wraps (RFC 3550): computed
                            // wide, cut to 32 bits.
                            let at = now();
                            let offset = if live {
                                let first = *first_picture_ms.get_or_insert(at);
                                (at - first).saturating_mul(u64::from(VIDEO_CLOCK_HZ) / 1000) as u32
                            } else {
                                (index as f64 * f64::from(VIDEO_CLOCK_HZ) / fps) as u64 as u32
                            };
                            match video.encode_frame(&frame, offset, at) {
                                // A queue gone stale was dropped: what follows needs a keyframe.
                                Ok(datagrams) => if !pacer.push(datagrams) {
                                    video.request_keyframe();
                                },
                                Err(e) => {
                                    error = Some(format!("video encoding: {e}"));
                                    break;
                                }
                            }
                            index += 1;
                        }
                        // The camera has nothing newer yet.
                        Ok(None) => {}
                        // The call goes on without this side's pictures.
                        Err(why) => source_failure = Some(why),
                    }
                }
            }
            _ = feedback_tick.tick() => {
                // Time can complete a picture too (one held behind a given-up one): shown below.
                outgoing.extend(receiver.poll_rtcp(now()));
            }
            got = datagrams.recv() => match got {
                Some(datagram) => {
                    let at = now();
                    if classify(&datagram) == DatagramKind::Rtcp {
                        if let Some((video, _)) = &mut sender
                            && let Ok(again) = video.handle_rtcp(&datagram, at)
                        {
                            pacer.push_urgent(again);
                        }
                    } else {
                        let _ = receiver.handle_datagram(&datagram, at);
                    }
                }
                None => break,
            },
        }
        while let Some(picture) = receiver.poll_picture() {
            report.width = picture.frame.width();
            report.height = picture.frame.height();
            controls.show_picture(picture.frame.clone());
            if let Some(recorder) = &mut recorder {
                recorder.record(picture.frame, picture.rtp_timestamp);
            }
        }
        if let Some((video, _)) = &sender {
            pacer.set_encoder_rate(video.stats().encoder_bps);
        }
        let due = std::iter::from_fn(|| pacer.poll(now()));
        for datagram in outgoing.drain(..).chain(due.collect::<Vec<_>>()) {
            if let Err(e) = turn.send_to(peer, &datagram).await {
                error = Some(format!("sending video: {e}"));
                break;
            }
        }
        if error.is_some() {
            break;
        }
    }
    if let Some((video, _)) = &sender {
        let s = video.stats();
        report.frames_sent = s.frames_encoded;
        report.keyframes_sent = s.keyframes;
        report.packets_sent = s.packets_sent;
        report.bytes_sent = s.bytes_sent;
        report.retransmitted = s.retransmitted;
        report.keyframe_requests_received = s.keyframe_requests_received;
        report.bitrate_bps = s.encoder_bps;
        report.rate_changes = s.encoder_rate_changes;
    }
    let r = receiver.stats();
    report.frames_received = r.frames_decoded;
    report.frames_dropped = r.frames_dropped;
    report.keyframe_requests_sent = r.keyframe_requests_sent;
    report.packets_nacked = r.packets_nacked;
    report.freezes = r.freezes;
    report.freeze_ms = r.freeze_ms;
    report.first_frame_ms = r.first_frame_ms;
    let mut summary = vec![match (&sender, not_sending.or(source_failure)) {
        (Some((_, pictures)), None) => pictures.describe(),
        (Some((_, pictures)), Some(why)) => format!("{}, until {why}", pictures.describe()),
        (None, Some(why)) => format!("receiving only ({why})"),
        (None, None) => "receiving only".to_owned(),
    }];
    if let Some(recorder) = recorder {
        let dropped = recorder.dropped;
        match recorder.finish().await {
            Ok(written) => {
                report.frames_recorded = written;
                let path = record.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                summary.push(format!("recorded {written} pictures to {path}"));
                if dropped > 0 {
                    summary.push(format!("{dropped} pictures not recorded (the disk was too slow)"));
                }
            }
            Err(e) => summary.push(format!("recording failed: {e}")),
        }
    }
    if let Some(e) = error {
        summary.push(e);
    }
    report.summary = summary.join(", ");
    report
}
