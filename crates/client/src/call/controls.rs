//! What the window showing a call can change while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rampart_media::video::VideoFrame;

/// What the window showing a call can do while it runs: mute the microphone, and look at the
/// other side's latest picture. Clones share the same call.
#[derive(Debug, Clone, Default)]
pub struct CallControls {
    muted: Arc<AtomicBool>,
    picture: Arc<std::sync::Mutex<Option<VideoFrame>>>,
}

impl CallControls {
    /// Muted, the call sends silence in place of the microphone (or the `play` file).
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Release);
    }

    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Acquire)
    }

    /// The other side's latest picture, once: `None` until a newer one arrives.
    pub fn take_picture(&self) -> Option<VideoFrame> {
        self.picture.lock().ok().and_then(|mut slot| slot.take())
    }

    pub(crate) fn show_picture(&self, frame: VideoFrame) {
        if let Ok(mut slot) = self.picture.lock() {
            *slot = Some(frame);
        }
    }
}
