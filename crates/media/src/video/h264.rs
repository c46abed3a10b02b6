//! H.264 (constrained baseline) through OpenH264, Cisco's real-time codec, compiled from source
//! by the build (`openh264-sys2`'s `source` feature; no system library, NASM used only when
//! present).
//!
//! Why H.264 and OpenH264: it is the codec every WebRTC endpoint speaks; OpenH264 was written
//! for real-time calls (low delay, no B-frames, its own rate control, cheap enough for a phone),
//! and it is BSD-licensed. VP8 through libvpx would need libvpx's own configure-and-make build;
//! AV1 (rav1e) is far too slow for a live call on two cores. The patent licence that Cisco
//! pays covers only its prebuilt binaries, not ours: see `docs/calls.md`.
//!
//! Like the Opus decoder, the H.264 decoder is the first code to read the other side's
//! pictures, so it only ever runs after accept (the pipeline needs a `MediaPermit`), only on
//! authenticated SRTP, only on access units the depacketizer has bounded, and frames larger
//! than [`super::frame::MAX_WIDTH`] x [`super::frame::MAX_HEIGHT`] are refused.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};
use thiserror::Error;

use super::frame::{VideoFrame, check_size};

/// H.264 NAL unit types Rampart looks at (ITU-T H.264 Table 7-1).
pub mod nal_type {
    pub const IDR_SLICE: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VideoCodecError {
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    #[error("H.264 decoder: {0}")]
    Decoder(String),
    #[error("decoded picture of {width}x{height} is not a size Rampart accepts")]
    BadPictureSize { width: usize, height: usize },
}

/// The encoder's settings: the two a call changes while it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoEncoderConfig {
    pub bitrate_bps: u32,
    pub fps: f32,
}

/// One encoded picture: its NAL units without start codes, in decoding order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedPicture {
    pub nal_units: Vec<Vec<u8>>,
    /// An IDR picture, with SPS and PPS: decodable on its own.
    pub keyframe: bool,
}

impl EncodedPicture {
    pub fn len(&self) -> usize {
        self.nal_units.iter().map(Vec::len).sum()
    }

    /// The encoder skipped the picture to keep to its bitrate: nothing to send.
    pub fn is_empty(&self) -> bool {
        self.nal_units.is_empty()
    }
}

/// Strips an Annex B start code (00 00 01 or 00 00 00 01) from the front of a NAL unit.
fn without_start_code(nal: &[u8]) -> &[u8] {
    nal.strip_prefix(&[0, 0, 0, 1]).or_else(|| nal.strip_prefix(&[0, 0, 1])).unwrap_or(nal)
}

pub struct VideoEncoder {
    encoder: Encoder,
    config: VideoEncoderConfig,
    force_keyframe: bool,
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl VideoEncoder {
    pub fn new(config: VideoEncoderConfig) -> Result<Self, VideoCodecError> {
        let settings = EncoderConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.fps))
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .complexity(Complexity::Low)
            // Keyframes when asked (a receiver's PLI) and every 10 s, so a receiver that lost
            // track recovers even if its requests are lost.
            .intra_frame_period(IntraFramePeriod::from_num_frames((config.fps.max(1.0) * 10.0) as u32))
            .skip_frames(true)
            // A scene cut becomes intra macroblocks in a P picture rather than an IDR: an IDR is
            // a burst several times a normal picture's size, which a narrow link drops.
            .scene_change_detect(false)
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), settings)
            .map_err(|e| VideoCodecError::Encoder(e.to_string()))?;
        Ok(Self { encoder, config, force_keyframe: true })
    }

    pub fn config(&self) -> VideoEncoderConfig {
        self.config
    }

    /// The next picture will be a keyframe.
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    pub fn encode(&mut self, frame: &VideoFrame) -> Result<EncodedPicture, VideoCodecError> {
        check_size(frame.width(), frame.height()).map_err(|e| VideoCodecError::Encoder(e.to_string()))?;
        if std::mem::take(&mut self.force_keyframe) {
            self.encoder.force_intra_frame();
        }
        let source = YUVSlices::new(
            (frame.y(), frame.u(), frame.v()),
            (frame.width(), frame.height()),
            (frame.width(), frame.width() / 2, frame.width() / 2),
        );
        let stream = self.encoder.encode(&source).map_err(|e| VideoCodecError::Encoder(e.to_string()))?;
        let keyframe = stream.frame_type() == FrameType::IDR;
        let mut picture = EncodedPicture { nal_units: Vec::new(), keyframe };
        if matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Ok(EncodedPicture::default());
        }
        for layer in (0..stream.num_layers()).filter_map(|i| stream.layer(i)) {
            for nal in (0..layer.nal_count()).filter_map(|i| layer.nal_unit(i)) {
                let nal = without_start_code(nal);
                if !nal.is_empty() {
                    picture.nal_units.push(nal.to_vec());
                }
            }
        }
        Ok(picture)
    }
}

pub struct VideoDecoder {
    decoder: Decoder,
}

impl std::fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VideoDecoder")
    }
}

impl VideoDecoder {
    pub fn new() -> Result<Self, VideoCodecError> {
        // Flush after every access unit: a call shows each picture as soon as it is whole.
        let config = DecoderConfig::new().flush_after_decode(Flush::Flush);
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| VideoCodecError::Decoder(e.to_string()))?;
        Ok(Self { decoder })
    }

    /// Decodes one access unit (its NAL units, Annex B framed), returning the picture if one
    /// is complete.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<VideoFrame>, VideoCodecError> {
        let Some(picture) =
            self.decoder.decode(access_unit).map_err(|e| VideoCodecError::Decoder(e.to_string()))?
        else {
            return Ok(None);
        };
        let (width, height) = picture.dimensions();
        check_size(width, height).map_err(|_| VideoCodecError::BadPictureSize { width, height })?;
        let (y_stride, u_stride, v_stride) = picture.strides();
        let mut data = Vec::with_capacity(super::frame::i420_len(width, height));
        let mut copy = |plane: &[u8], stride: usize, w: usize, h: usize| {
            for row in 0..h {
                let line = plane.get(row * stride..row * stride + w);
                data.extend_from_slice(line.unwrap_or(&[]));
            }
        };
        copy(picture.y(), y_stride, width, height);
        copy(picture.u(), u_stride, width / 2, height / 2);
        copy(picture.v(), v_stride, width / 2, height / 2);
        VideoFrame::from_i420(width, height, data)
            .map(Some)
            .map_err(|_| VideoCodecError::BadPictureSize { width, height })
    }
}

/// Joins NAL units into an Annex B access unit for the decoder.
pub fn annex_b(nal_units: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal_units.iter().map(|n| n.len() + 4).sum());
    for nal in nal_units {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// The NAL unit type of a NAL unit (its first byte's low five bits).
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::video::frame::test_pattern;

    #[test]
    fn pictures_survive_the_codec() {
        let config = VideoEncoderConfig { bitrate_bps: 1_000_000, fps: 30.0 };
        let mut encoder = VideoEncoder::new(config).unwrap();
        let mut decoder = VideoDecoder::new().unwrap();
        let mut worst = f64::MAX;
        for i in 0..20 {
            let frame = test_pattern(320, 240, i).unwrap();
            let picture = encoder.encode(&frame).unwrap();
            if i == 0 {
                assert!(picture.keyframe, "the first picture is a keyframe");
                let types: Vec<_> = picture.nal_units.iter().filter_map(|n| nal_unit_type(n)).collect();
                assert!(types.contains(&nal_type::SPS) && types.contains(&nal_type::IDR_SLICE), "{types:?}");
            }
            if picture.is_empty() {
                continue;
            }
            let decoded = decoder.decode(&annex_b(&picture.nal_units)).unwrap().unwrap();
            worst = worst.min(decoded.psnr_y(&frame).unwrap());
        }
        assert!(worst > 30.0, "worst PSNR {worst:.1} dB");
        encoder.request_keyframe();
        let picture = encoder.encode(&test_pattern(320, 240, 21).unwrap()).unwrap();
        assert!(picture.keyframe);
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut decoder = VideoDecoder::new().unwrap();
        for seed in 0u8..50 {
            let junk: Vec<u8> =
                (0..500u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed)).collect();
            let mut unit = vec![0, 0, 0, 1, 0x65];
            unit.extend_from_slice(&junk);
            let _ = decoder.decode(&unit);
        }
    }
}
