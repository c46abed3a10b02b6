//! Calls: the call driver over a connection and a relay
//! (`driver`), the microphone and speaker (`audio_device`), the camera (`camera`), video (`video`), and what the
//! window showing a call can change while it runs (`controls`).

pub mod audio_device;
pub mod camera;
mod controls;
mod driver;
pub mod video;

pub use crate::call_session::{CallProgress, CallRefusal};
pub use camera::{CameraInfo, CameraSpec};
pub use controls::CallControls;
pub use driver::*;
pub use video::{CallVideo, VideoClip, VideoReport, VideoSource};
