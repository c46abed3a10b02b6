//! Call video, sans-IO: raw frames and `.y4m` files ([`frame`], [`y4m`]), H.264 through
//! OpenH264 ([`h264`]), RTP payloading ([`payload`], RFC 6184), RTCP feedback ([`feedback`]:
//! receiver reports, NACK, PLI), delay- and loss-based rate control ([`rate`]), pacing ([`pacer`]), and both ends of a
//! call's video stream ([`pipeline`]), which only a `MediaPermit` opens.

pub mod feedback;
pub mod frame;
pub mod h264;
pub mod pacer;
pub mod payload;
pub mod pipeline;
pub mod rate;
pub mod sps;
pub mod y4m;

pub use frame::{VideoFrame, test_pattern};
pub use pacer::Pacer;
pub use pipeline::{
    DecodedPicture, H264_PAYLOAD_TYPE, SendStream, VIDEO_CLOCK_HZ, VideoReceiver, VideoReceiverStats,
    VideoSendConfig, VideoSendError, VideoSender, VideoSenderStats,
};
