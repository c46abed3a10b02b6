//! Reads the picture size from an H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1) before
//! the decoder sees it. The decoder allocates its picture and reference buffers from what the
//! SPS declares (up to the codec level's limits, hundreds of megabytes); checked here, an
//! oversized or oddly built SPS costs nothing but its refusal.
//!
//! Only what Rampart sends is accepted: the profiles without the high-profile extensions
//! (baseline, main, extended), 8-bit 4:2:0, at most 1920x1088 in either orientation and 16
//! reference frames.

use thiserror::Error;

use super::frame::check_size;
use super::h264::{nal_type, nal_unit_type};

/// Most reference frames an SPS may ask for (H.264's own limit).
pub const MAX_REFERENCE_FRAMES: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SpsError {
    #[error("not a sequence parameter set")]
    NotSps,
    #[error("the SPS ends early")]
    Truncated,
    #[error("profile {0} is not one Rampart decodes")]
    UnsupportedProfile(u8),
    #[error("the SPS field {0} is out of range")]
    OutOfRange(&'static str),
    #[error("an SPS for {width}x{height} pictures is over the limit")]
    TooLarge { width: usize, height: usize },
}

/// What the SPS says the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsSize {
    pub width: usize,
    pub height: usize,
    pub reference_frames: u32,
}

/// Bits of the SPS's payload, emulation prevention bytes (00 00 03) removed.
struct Bits {
    bytes: Vec<u8>,
    at: usize,
}

impl Bits {
    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self.bytes.get(self.at / 8).ok_or(SpsError::Truncated)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Ok(u32::from(bit))
    }

    /// Exp-Golomb, unsigned (§9.1); at most 31 leading zeros.
    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange("exp-Golomb code"));
            }
        }
        let mut rest = 0u64;
        for _ in 0..zeros {
            rest = (rest << 1) | u64::from(self.bit()?);
        }
        u32::try_from((1u64 << zeros) - 1 + rest).map_err(|_| SpsError::OutOfRange("exp-Golomb code"))
    }

    /// Exp-Golomb, signed; only its range matters here.
    fn se(&mut self) -> Result<(), SpsError> {
        self.ue().map(|_| ())
    }

    fn ue_at_most(&mut self, field: &'static str, max: u32) -> Result<u32, SpsError> {
        self.ue().and_then(|v| if v <= max { Ok(v) } else { Err(SpsError::OutOfRange(field)) })
    }
}

fn unescape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &byte in payload {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// The picture size and reference frames an SPS NAL unit declares, if Rampart accepts them.
pub fn read_sps(nal: &[u8]) -> Result<SpsSize, SpsError> {
    if nal_unit_type(nal) != Some(nal_type::SPS) {
        return Err(SpsError::NotSps);
    }
    let rbsp = unescape(nal.get(1..).unwrap_or_default());
    let profile = *rbsp.first().ok_or(SpsError::Truncated)?;
    // Baseline, main, extended: no chroma format, bit depth or scaling matrices to skip.
    if !matches!(profile, 66 | 77 | 88) {
        return Err(SpsError::UnsupportedProfile(profile));
    }
    let mut bits = Bits { bytes: rbsp, at: 24 };
    bits.ue_at_most("seq_parameter_set_id", 31)?;
    bits.ue_at_most("log2_max_frame_num_minus4", 12)?;
    match bits.ue_at_most("pic_order_cnt_type", 2)? {
        0 => {
            bits.ue_at_most("log2_max_pic_order_cnt_lsb_minus4", 12)?;
        }
        1 => {
            bits.bit()?;
            bits.se()?;
            bits.se()?;
            for _ in 0..bits.ue_at_most("num_ref_frames_in_pic_order_cnt_cycle", 255)? {
                bits.se()?;
            }
        }
        _ => {}
    }
    let reference_frames = bits.ue_at_most("max_num_ref_frames", MAX_REFERENCE_FRAMES)?;
    bits.bit()?;
    let width_mbs = bits.ue_at_most("pic_width_in_mbs_minus1", 1023)? as usize + 1;
    let height_units = bits.ue_at_most("pic_height_in_map_units_minus1", 1023)? as usize + 1;
    let frame_mbs_only = bits.bit()? == 1;
    let height_mbs = height_units * if frame_mbs_only { 1 } else { 2 };
    let (width, height) = (width_mbs * 16, height_mbs * 16);
    check_size(width, height).map_err(|_| SpsError::TooLarge { width, height })?;
    Ok(SpsSize { width, height, reference_frames })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::video::frame::test_pattern;
    use crate::video::h264::{VideoEncoder, VideoEncoderConfig};

    fn encoder_sps(width: usize, height: usize) -> Vec<u8> {
        let mut encoder = VideoEncoder::new(VideoEncoderConfig { bitrate_bps: 500_000, fps: 30.0 }).unwrap();
        let picture = encoder.encode(&test_pattern(width, height, 0).unwrap()).unwrap();
        picture.nal_units.into_iter().find(|n| nal_unit_type(n) == Some(nal_type::SPS)).unwrap()
    }

    #[test]
    fn reads_the_size_openh264_writes() {
        for (w, h) in [(320, 240), (640, 480), (1280, 720), (480, 640)] {
            let size = read_sps(&encoder_sps(w, h)).unwrap();
            // Sizes are in whole macroblocks (720 rows: 45 macroblocks exactly).
            assert_eq!((size.width, size.height), (w.div_ceil(16) * 16, h.div_ceil(16) * 16), "{w}x{h}");
            assert!(size.reference_frames <= MAX_REFERENCE_FRAMES);
        }
    }

    #[test]
    fn an_oversized_or_foreign_sps_is_refused() {
        // Baseline, level 5.1, id 0, frame num 4 bits, POC type 2, 1 reference frame, no gaps,
        // 256 x 256 macroblocks (4096x4096), frame MBs only: ue(255) = 00000000 1 00000000.
        let mut bits = String::from("1");
        bits += "1";
        bits += "011";
        bits += "010";
        bits += "0";
        bits += "00000000100000000";
        bits += "00000000100000000";
        bits += "1";
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let mut nal = vec![0x67, 66, 0, 51];
        nal.extend(
            bits.as_bytes()
                .chunks(8)
                .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()),
        );
        assert_eq!(read_sps(&nal), Err(SpsError::TooLarge { width: 4096, height: 4096 }));
        assert_eq!(read_sps(&[0x67, 100, 0, 40, 0xff]), Err(SpsError::UnsupportedProfile(100)));
        assert_eq!(read_sps(&[0x67, 66]), Err(SpsError::Truncated));
        assert_eq!(read_sps(&[0x68, 66, 0, 30]), Err(SpsError::NotSps));
        assert_eq!(read_sps(&[0x67, 66, 0, 30, 0, 0, 0, 0, 0]), Err(SpsError::OutOfRange("exp-Golomb code")));
    }
}
