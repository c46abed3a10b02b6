//! Raw video frames (planar I420: full-size Y, quarter-size U and V), the quality figure the
//! tests and benches use (PSNR), and a moving test pattern.

use thiserror::Error;

/// Largest frame Rampart sends or accepts, in either orientation: 1920x1088 (1080p, rounded up
/// to whole macroblocks). Anything larger is refused before a buffer is allocated for it.
pub const MAX_WIDTH: usize = 1920;
pub const MAX_HEIGHT: usize = 1088;

/// Why a frame's shape is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameShapeError {
    #[error("{width}x{height} is not a frame size Rampart handles (even sizes, 16x16 to 1920x1088)")]
    BadSize { width: usize, height: usize },
    #[error("an I420 frame of {width}x{height} is {expected} bytes, not {got}")]
    WrongLength { width: usize, height: usize, expected: usize, got: usize },
}

/// One frame of planar 8-bit 4:2:0 video (I420).
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VideoFrame({}x{})", self.width, self.height)
    }
}

/// The rounded mean of two samples.
fn mean(a: u8, b: u8) -> u8 {
    u8::try_from((u16::from(a) + u16::from(b)).div_ceil(2)).unwrap_or(u8::MAX)
}

/// Bytes of an I420 frame of this size.
pub fn i420_len(width: usize, height: usize) -> usize {
    width * height + 2 * (width / 2) * (height / 2)
}

/// Whether Rampart handles this frame size (both orientations).
pub fn check_size(width: usize, height: usize) -> Result<(), FrameShapeError> {
    let (long, short) = (width.max(height), width.min(height));
    let fits = long <= MAX_WIDTH && (16..=MAX_HEIGHT).contains(&short);
    if fits && width.is_multiple_of(2) && height.is_multiple_of(2) {
        Ok(())
    } else {
        Err(FrameShapeError::BadSize { width, height })
    }
}

impl VideoFrame {
    /// A frame from its I420 bytes (Y plane, then U, then V, no padding).
    pub fn from_i420(width: usize, height: usize, data: Vec<u8>) -> Result<Self, FrameShapeError> {
        check_size(width, height)?;
        let expected = i420_len(width, height);
        if data.len() != expected {
            return Err(FrameShapeError::WrongLength { width, height, expected, got: data.len() });
        }
        Ok(Self { width, height, data })
    }

    /// A frame from packed 4:2:2 YUYV (what most USB cameras send), `stride` bytes a row:
    /// luma is taken as it is, and each 2x2 block's chroma is the mean of its two rows.
    pub fn from_yuyv(
        width: usize,
        height: usize,
        stride: usize,
        data: &[u8],
    ) -> Result<Self, FrameShapeError> {
        check_size(width, height)?;
        let row = width * 2;
        let needed = stride.checked_mul(height - 1).and_then(|n| n.checked_add(row));
        if stride < row || needed.is_none_or(|n| data.len() < n) {
            let expected = needed.unwrap_or(usize::MAX);
            return Err(FrameShapeError::WrongLength { width, height, expected, got: data.len() });
        }
        let (luma, chroma) = (width * height, (width / 2) * (height / 2));
        let mut out = vec![0u8; i420_len(width, height)];
        let (y_plane, uv) = out.split_at_mut(luma);
        let (u_plane, v_plane) = uv.split_at_mut(chroma);
        let rows: Vec<&[u8]> = data.chunks(stride).take(height).filter_map(|r| r.get(..row)).collect();
        let planes = y_plane
            .chunks_exact_mut(2 * width)
            .zip(u_plane.chunks_exact_mut(width / 2).zip(v_plane.chunks_exact_mut(width / 2)));
        for (pair, (y_pair, (u_row, v_row))) in planes.enumerate() {
            let (Some(top), Some(bottom)) = (rows.get(2 * pair), rows.get(2 * pair + 1)) else { break };
            let (y_top, y_bottom) = y_pair.split_at_mut(width);
            for (line, y_row) in [(top, y_top), (bottom, y_bottom)] {
                for (px, y2) in line.chunks_exact(4).zip(y_row.chunks_exact_mut(2)) {
                    if let ([y0, _, y1, _], [left, right]) = (px, y2) {
                        (*left, *right) = (*y0, *y1);
                    }
                }
            }
            let chroma =
                top.chunks_exact(4).zip(bottom.chunks_exact(4)).zip(u_row.iter_mut().zip(v_row.iter_mut()));
            for ((a, b), (u, v)) in chroma {
                if let ([_, ua, _, va], [_, ub, _, vb]) = (a, b) {
                    (*u, *v) = (mean(*ua, *ub), mean(*va, *vb));
                }
            }
        }
        Ok(Self { width, height, data: out })
    }

    /// A black frame.
    pub fn black(width: usize, height: usize) -> Result<Self, FrameShapeError> {
        check_size(width, height)?;
        let luma = width * height;
        let mut data = vec![16u8; i420_len(width, height)];
        data.get_mut(luma..).into_iter().flatten().for_each(|b| *b = 128);
        Ok(Self { width, height, data })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The whole I420 buffer.
    pub fn as_i420(&self) -> &[u8] {
        &self.data
    }

    pub fn into_i420(self) -> Vec<u8> {
        self.data
    }

    fn luma_len(&self) -> usize {
        self.width * self.height
    }

    fn chroma_len(&self) -> usize {
        (self.width / 2) * (self.height / 2)
    }

    pub fn y(&self) -> &[u8] {
        self.data.get(..self.luma_len()).unwrap_or_default()
    }

    pub fn u(&self) -> &[u8] {
        let start = self.luma_len();
        self.data.get(start..start + self.chroma_len()).unwrap_or_default()
    }

    pub fn v(&self) -> &[u8] {
        let start = self.luma_len() + self.chroma_len();
        self.data.get(start..).unwrap_or_default()
    }

    /// The colour of pixel (`x`, `y`) in RGB (BT.601, limited range, as cameras and H.264 use
    /// by default); black outside the frame.
    pub fn rgb_at(&self, x: usize, y: usize) -> [u8; 3] {
        if x >= self.width || y >= self.height {
            return [0, 0, 0];
        }
        let chroma = (y / 2) * (self.width / 2) + x / 2;
        let luma = f32::from(self.y().get(y * self.width + x).copied().unwrap_or(16)) - 16.0;
        let u = f32::from(self.u().get(chroma).copied().unwrap_or(128)) - 128.0;
        let v = f32::from(self.v().get(chroma).copied().unwrap_or(128)) - 128.0;
        let channel = |value: f32| value.round().clamp(0.0, 255.0) as u8;
        [
            channel(1.164 * luma + 1.596 * v),
            channel(1.164 * luma - 0.392 * u - 0.813 * v),
            channel(1.164 * luma + 2.017 * u),
        ]
    }

    /// Luma PSNR against a reference frame of the same size, in dB (`None` when the sizes
    /// differ); identical frames give [`PSNR_IDENTICAL_DB`].
    pub fn psnr_y(&self, reference: &VideoFrame) -> Option<f64> {
        if (self.width, self.height) != (reference.width, reference.height) {
            return None;
        }
        let squared: u64 = self
            .y()
            .iter()
            .zip(reference.y())
            .map(|(&a, &b)| {
                let d = u64::from(a.abs_diff(b));
                d * d
            })
            .sum();
        if squared == 0 {
            return Some(PSNR_IDENTICAL_DB);
        }
        let mse = squared as f64 / self.luma_len() as f64;
        Some(10.0 * (255.0 * 255.0 / mse).log10())
    }
}

/// What [`VideoFrame::psnr_y`] reports for identical frames (PSNR is infinite there).
pub const PSNR_IDENTICAL_DB: f64 = 100.0;

/// Frame `index` of a moving test pattern: a diagonal gradient sliding right, a bright square
/// crossing the picture, fine texture, and colour bars in the chroma planes. Enough motion and
/// detail that the encoder cannot skip frames or spend nothing on them.
pub fn test_pattern(width: usize, height: usize, index: u64) -> Result<VideoFrame, FrameShapeError> {
    check_size(width, height)?;
    let mut data = Vec::with_capacity(i420_len(width, height));
    let shift = (index as usize).wrapping_mul(4);
    let square = 48.min(height / 2);
    let square_x = (index as usize * 7) % width.saturating_sub(square).max(1);
    let square_y = height / 4;
    for y in 0..height {
        for x in 0..width {
            let inside =
                (square_x..square_x + square).contains(&x) && (square_y..square_y + square).contains(&y);
            let texture = ((x * 31) ^ (y * 17)) & 0x0f;
            let value = if inside { 235 } else { ((x + y + shift) % 200) as u8 + 20 + texture as u8 };
            data.push(value);
        }
    }
    let (cw, ch) = (width / 2, height / 2);
    for plane in 0..2 {
        for y in 0..ch {
            for x in 0..cw {
                let bar = (x * 8 / cw.max(1)) as u8;
                let value = if plane == 0 { 64 + bar * 16 } else { 192 - bar * 16 } + (y % 4) as u8;
                data.push(value);
            }
        }
    }
    VideoFrame::from_i420(width, height, data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_becomes_i420_with_chroma_averaged_over_two_rows() {
        // 4x2 would be too small a frame: 16x16, rows padded to 40 bytes as drivers may.
        let (w, h, stride) = (16, 16, 40);
        let mut yuyv = vec![0xEEu8; stride * h];
        for y in 0..h {
            for x in 0..w / 2 {
                let px = &mut yuyv[y * stride + 4 * x..][..4];
                px.copy_from_slice(&[
                    (y * w + 2 * x) as u8,
                    100 + (y % 2) as u8 * 10,
                    (y * w + 2 * x + 1) as u8,
                    200,
                ]);
            }
        }
        let frame = VideoFrame::from_yuyv(w, h, stride, &yuyv).unwrap();
        assert_eq!(frame.y(), (0..w * h).map(|i| i as u8).collect::<Vec<_>>().as_slice(), "luma kept");
        assert!(frame.u().iter().all(|&u| u == 105), "the mean of 100 and 110");
        assert!(frame.v().iter().all(|&v| v == 200));
        // Short data, a stride shorter than a row, and sizes Rampart does not send are refused.
        assert!(VideoFrame::from_yuyv(w, h, stride, &yuyv[..stride * h - 8 - 1]).is_err());
        assert!(VideoFrame::from_yuyv(w, h, 2 * w - 2, &yuyv).is_err());
        assert!(VideoFrame::from_yuyv(15, h, stride, &yuyv).is_err());
        assert!(VideoFrame::from_yuyv(4096, 4096, 8192, &[]).is_err());
    }

    #[test]
    fn sizes_are_checked() {
        assert!(VideoFrame::from_i420(640, 480, vec![0; i420_len(640, 480)]).is_ok());
        assert!(VideoFrame::from_i420(480, 640, vec![0; i420_len(480, 640)]).is_ok(), "portrait");
        assert!(VideoFrame::from_i420(641, 480, vec![0; i420_len(641, 480)]).is_err(), "odd");
        assert!(VideoFrame::from_i420(4096, 2160, Vec::new()).is_err(), "too large");
        assert!(VideoFrame::from_i420(640, 480, vec![0; 10]).is_err(), "short buffer");
    }

    #[test]
    fn psnr_of_identical_and_noisy_frames() {
        let a = test_pattern(64, 48, 3).unwrap();
        assert_eq!(a.psnr_y(&a), Some(PSNR_IDENTICAL_DB));
        let mut noisy = a.clone().into_i420();
        for (i, b) in noisy.iter_mut().enumerate().take(64 * 48) {
            *b = if i % 2 == 0 { b.saturating_add(4) } else { b.saturating_sub(4) };
        }
        let noisy = VideoFrame::from_i420(64, 48, noisy).unwrap();
        // An error of ±4 everywhere (saturation aside) is about 36 dB.
        let psnr = noisy.psnr_y(&a).unwrap();
        assert!((35.0..37.5).contains(&psnr), "{psnr}");
        assert_eq!(a.psnr_y(&test_pattern(32, 32, 0).unwrap()), None);
    }

    #[test]
    fn colours_convert_from_limited_range() {
        let black = VideoFrame::black(16, 16).unwrap();
        assert_eq!(black.rgb_at(3, 3), [0, 0, 0]);
        let mut white = black.into_i420();
        white.iter_mut().take(256).for_each(|b| *b = 235);
        let white = VideoFrame::from_i420(16, 16, white).unwrap();
        assert_eq!(white.rgb_at(0, 0), [255, 255, 255]);
        assert_eq!(white.rgb_at(99, 0), [0, 0, 0], "outside the frame");
    }

    #[test]
    fn the_pattern_moves() {
        let a = test_pattern(64, 48, 0).unwrap();
        let b = test_pattern(64, 48, 1).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_i420().len(), i420_len(64, 48));
    }
}
