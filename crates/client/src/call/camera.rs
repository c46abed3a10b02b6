//! The computer's camera for video calls, through Video4Linux2 (`/dev/video*`).
//!
//! Reached with `linuxvideo`, a Rust implementation of the V4L2 ioctls, so the build links no
//! C library. A camera is asked for packed YUYV (4:2:2), which nearly every USB camera
//! offers, at the size and rate the call wants; the driver may give another size, which is
//! used as given when Rampart can send it. Each picture becomes I420 for the encoder on a
//! thread of its own, and only the latest waits for the video task: a slow encoder skips
//! pictures instead of falling behind. Only the local user's choices (which device) reach
//! this module; nothing from the network does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use linuxvideo::format::{PixFormat, PixelFormat};
use linuxvideo::{BufType, Device, Fract};
use rampart_media::video::VideoFrame;
use serde::Serialize;
use thiserror::Error;

/// Why a camera could not be used.
#[derive(Debug, Error)]
pub enum CameraError {
    #[error("no camera found (looked for a video capture device under /dev/video*)")]
    NoCamera,
    #[error("{path}: {reason}")]
    Device { path: String, reason: String },
    #[error("{path} cannot send YUYV pictures (it offers {offers}); Rampart takes only YUYV for now")]
    NoUsableFormat { path: String, offers: String },
}

/// A camera, as `rampart video devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraInfo {
    pub path: PathBuf,
    pub name: String,
    /// It can send YUYV, which Rampart takes.
    pub usable: bool,
}

/// Which camera, and what a call asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraSpec {
    /// `None`: the first usable camera.
    pub device: Option<PathBuf>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for CameraSpec {
    fn default() -> Self {
        Self { device: None, width: 640, height: 480, fps: 30 }
    }
}

fn device_error(path: &Path, e: impl std::fmt::Display) -> CameraError {
    CameraError::Device { path: path.display().to_string(), reason: e.to_string() }
}

/// The video capture devices of this machine (none where there is no `/dev/video*`).
pub fn cameras() -> Vec<CameraInfo> {
    let Ok(devices) = linuxvideo::list() else { return Vec::new() };
    let mut found: Vec<CameraInfo> = devices
        .flatten()
        .filter(|d| d.supported_buf_types().contains(linuxvideo::BufTypes::VIDEO_CAPTURE))
        .filter_map(|d| {
            let path = d.path().ok()?;
            let name = d.capabilities().map(|c| c.card().to_owned()).unwrap_or_default();
            Some(CameraInfo { usable: offers_yuyv(&d), path, name })
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn offers_yuyv(device: &Device) -> bool {
    device.formats(BufType::VIDEO_CAPTURE).flatten().any(|f| f.pixel_format() == PixelFormat::YUYV)
}

/// A camera sending pictures, until dropped.
#[derive(Debug)]
pub struct Camera {
    latest: Arc<Mutex<Option<VideoFrame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<String>>>,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    pub name: String,
}

impl Camera {
    /// Open the camera `spec` names (or the first usable one) and start capturing.
    pub fn open(spec: &CameraSpec) -> Result<Self, CameraError> {
        let path = match &spec.device {
            Some(path) => path.clone(),
            None => cameras().into_iter().find(|c| c.usable).map(|c| c.path).ok_or(CameraError::NoCamera)?,
        };
        let device = Device::open(&path).map_err(|e| device_error(&path, e))?;
        if !offers_yuyv(&device) {
            let offers: Vec<String> = device
                .formats(BufType::VIDEO_CAPTURE)
                .flatten()
                .map(|f| f.pixel_format().to_string())
                .collect();
            return Err(CameraError::NoUsableFormat {
                path: path.display().to_string(),
                offers: offers.join(", "),
            });
        }
        let name = device.capabilities().map(|c| c.card().to_owned()).unwrap_or_default();
        let capture = device
            .video_capture(PixFormat::new(spec.width, spec.height, PixelFormat::YUYV))
            .map_err(|e| device_error(&path, e))?;
        let format = capture.format();
        let (width, height) = (format.width() as usize, format.height() as usize);
        let stride = format.bytes_per_line() as usize;
        if format.pixel_format() != PixelFormat::YUYV {
            return Err(CameraError::NoUsableFormat {
                path: path.display().to_string(),
                offers: format.pixel_format().to_string(),
            });
        }
        rampart_media::video::frame::check_size(width, height).map_err(|e| device_error(&path, e))?;
        // The driver picks the nearest rate it has; what it picked is what the encoder is told.
        let interval = capture.set_frame_interval(Fract::new(1, spec.fps.max(1))).ok();
        let fps = interval
            .filter(|f| f.numerator() > 0)
            .map_or(f64::from(spec.fps), |f| f64::from(f.denominator()) / f64::from(f.numerator()))
            .clamp(1.0, 60.0);
        let mut stream = capture.into_stream().map_err(|e| device_error(&path, e))?;
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (slot, stopped) = (latest.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    let picture = stream.dequeue(|view| {
                        if view.is_error() {
                            return Ok(None);
                        }
                        Ok(VideoFrame::from_yuyv(width, height, stride, &view).ok())
                    });
                    match picture {
                        Ok(Some(frame)) => {
                            if let Ok(mut slot) = slot.lock() {
                                *slot = Some(frame);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return Some(e.to_string()),
                    }
                }
                None
            })
            .map_err(|e| device_error(&path, e))?;
        Ok(Self { latest, stop, thread: Some(thread), width, height, fps, name })
    }

    /// The newest picture since the last call, if one came.
    pub fn take_picture(&self) -> Option<VideoFrame> {
        self.latest.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Why capture stopped, once it has.
    pub fn failure(&mut self) -> Option<String> {
        if !self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Some(why))) => Some(why),
            Some(Ok(None)) => None,
            Some(Err(_)) => Some("the camera thread stopped".into()),
            None => None,
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        // The thread sees this after its current picture (a camera sends one every 33 ms);
        // it is not waited for, so a stuck driver cannot hold up the end of a call.
        self.stop.store(true, Ordering::Release);
    }
}
