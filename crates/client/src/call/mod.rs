//! Calls: the call driver over a connection and a relay
//! (`driver`), the microphone and speaker (`audio_device`), video (`video`), and what the
//! window showing a call can change while it runs (`controls`).

pub mod audio_device;
mod controls;
mod driver;
pub mod video;

pub use crate::call_session::{CallProgress, CallRefusal};
pub use controls::CallControls;
pub use driver::*;
pub use video::{CallVideo, VideoClip, VideoReport};
