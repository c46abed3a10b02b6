//! YUV4MPEG2 (`.y4m`) files: raw 4:2:0 video with a one-line text header, the format test
//! clips come in and the one `rampart call --video-record` writes. Only what Rampart sends is
//! read: 8-bit 4:2:0, progressive. Every line has a length limit and the frame size is checked
//! before a buffer is allocated.

use std::io::{BufRead, Read, Write};

use thiserror::Error;

use super::frame::{FrameShapeError, VideoFrame, check_size, i420_len};

/// Longest stream or frame header line read.
pub const MAX_HEADER_LINE: usize = 512;
const MAGIC: &str = "YUV4MPEG2";

#[derive(Debug, Error)]
pub enum Y4mError {
    #[error("not a YUV4MPEG2 file")]
    NotY4m,
    #[error("a header line is longer than {MAX_HEADER_LINE} bytes")]
    HeaderTooLong,
    #[error("header field {0:?} is not valid")]
    BadField(String),
    #[error("the header has no {0} field")]
    Missing(&'static str),
    #[error("colour space {0} is not 4:2:0 (convert with: ffmpeg -i in -pix_fmt yuv420p out.y4m)")]
    UnsupportedColour(String),
    #[error("interlaced video is not supported")]
    Interlaced,
    #[error(transparent)]
    Shape(#[from] FrameShapeError),
    #[error("a frame does not start with FRAME")]
    BadFrameHeader,
    #[error("the file ends in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The stream header: size and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Y4mHeader {
    pub width: usize,
    pub height: usize,
    /// Frame rate as a fraction.
    pub rate: (u32, u32),
}

impl Y4mHeader {
    /// Frames per second (30 when the header's rate is nonsense).
    pub fn fps(&self) -> f64 {
        let (num, den) = self.rate;
        if num == 0 || den == 0 { 30.0 } else { f64::from(num) / f64::from(den) }
    }
}

/// Reads one header line (without its newline), at most [`MAX_HEADER_LINE`] bytes; `None` at a
/// clean end of file.
fn read_line(input: &mut impl BufRead) -> Result<Option<String>, Y4mError> {
    let mut line = Vec::new();
    let read = input.take(MAX_HEADER_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_HEADER_LINE { Y4mError::HeaderTooLong } else { Y4mError::Truncated });
    }
    line.pop();
    String::from_utf8(line).map(Some).map_err(|_| Y4mError::NotY4m)
}

fn parse_header(line: &str) -> Result<Y4mHeader, Y4mError> {
    let mut fields = line.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err(Y4mError::NotY4m);
    }
    let (mut width, mut height, mut rate) = (None, None, (30, 1));
    let number =
        |field: &str, value: &str| value.parse::<usize>().map_err(|_| Y4mError::BadField(field.to_owned()));
    for field in fields.filter(|f| !f.is_empty()) {
        // A field is one ASCII letter and its value; anything else (a multi-byte character
        // first, say) is not a field.
        let (tag, value) = field.split_at_checked(1).ok_or_else(|| Y4mError::BadField(field.to_owned()))?;
        match tag {
            "W" => width = Some(number(field, value)?),
            "H" => height = Some(number(field, value)?),
            "F" => {
                let (num, den) = value.split_once(':').ok_or_else(|| Y4mError::BadField(field.to_owned()))?;
                let parse = |v: &str| v.parse::<u32>().map_err(|_| Y4mError::BadField(field.to_owned()));
                rate = (parse(num)?, parse(den)?);
            }
            "I" if !matches!(value, "p" | "?") => return Err(Y4mError::Interlaced),
            "C" if !value.starts_with("420") || value.contains("p10") || value.contains("p12") => {
                return Err(Y4mError::UnsupportedColour(value.to_owned()));
            }
            // Aspect ratio, colour range, comments (X...): nothing Rampart needs.
            _ => {}
        }
    }
    let header = Y4mHeader {
        width: width.ok_or(Y4mError::Missing("W (width)"))?,
        height: height.ok_or(Y4mError::Missing("H (height)"))?,
        rate,
    };
    check_size(header.width, header.height)?;
    Ok(header)
}

/// Reads a `.y4m` stream frame by frame.
#[derive(Debug)]
pub struct Y4mReader<R> {
    input: R,
    header: Y4mHeader,
}

impl<R: BufRead> Y4mReader<R> {
    pub fn new(mut input: R) -> Result<Self, Y4mError> {
        let line = match read_line(&mut input) {
            Ok(Some(line)) => line,
            Ok(None) | Err(Y4mError::Truncated) => return Err(Y4mError::NotY4m),
            Err(e) => return Err(e),
        };
        let header = parse_header(&line)?;
        Ok(Self { input, header })
    }

    pub fn header(&self) -> Y4mHeader {
        self.header
    }

    /// The next frame, `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>, Y4mError> {
        let Some(line) = read_line(&mut self.input)? else { return Ok(None) };
        if line != "FRAME" && !line.starts_with("FRAME ") {
            return Err(Y4mError::BadFrameHeader);
        }
        let (width, height) = (self.header.width, self.header.height);
        let mut data = vec![0; i420_len(width, height)];
        self.input.read_exact(&mut data).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Y4mError::Truncated,
            _ => Y4mError::Io(e),
        })?;
        Ok(Some(VideoFrame::from_i420(width, height, data)?))
    }

    /// Every frame, at most `limit` of them.
    pub fn read_all(mut self, limit: usize) -> Result<(Y4mHeader, Vec<VideoFrame>), Y4mError> {
        let mut frames = Vec::new();
        while frames.len() < limit {
            match self.next_frame()? {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        Ok((self.header, frames))
    }
}

/// Writes a `.y4m` stream. Each frame may carry a comment (`X...` parameter); the call
/// recorder writes each frame's RTP timestamp there so that a test can line it up with the
/// frame that was sent.
#[derive(Debug)]
pub struct Y4mWriter<W> {
    output: W,
    header: Y4mHeader,
}

impl<W: Write> Y4mWriter<W> {
    pub fn new(mut output: W, header: Y4mHeader) -> Result<Self, Y4mError> {
        check_size(header.width, header.height)?;
        let (num, den) = header.rate;
        writeln!(output, "{MAGIC} W{} H{} F{num}:{den} Ip A1:1 C420jpeg", header.width, header.height)?;
        Ok(Self { output, header })
    }

    /// Writes one frame; `comment` must be a single word (no spaces or newlines).
    pub fn write_frame(&mut self, frame: &VideoFrame, comment: Option<&str>) -> Result<(), Y4mError> {
        if (frame.width(), frame.height()) != (self.header.width, self.header.height) {
            return Err(Y4mError::Shape(FrameShapeError::BadSize {
                width: frame.width(),
                height: frame.height(),
            }));
        }
        match comment.filter(|c| !c.is_empty() && !c.contains([' ', '\n'])) {
            Some(comment) => writeln!(self.output, "FRAME X{comment}")?,
            None => writeln!(self.output, "FRAME")?,
        }
        self.output.write_all(frame.as_i420())?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, Y4mError> {
        self.output.flush()?;
        Ok(self.output)
    }
}

/// The comment ([`Y4mWriter::write_frame`]) of each frame of a stream, in order.
pub fn frame_comments(mut input: impl BufRead) -> Result<Vec<Option<String>>, Y4mError> {
    let header = parse_header(&read_line(&mut input)?.ok_or(Y4mError::NotY4m)?)?;
    let mut comments = Vec::new();
    while let Some(line) = read_line(&mut input)? {
        let rest = line.strip_prefix("FRAME").ok_or(Y4mError::BadFrameHeader)?;
        comments.push(rest.split(' ').find_map(|f| f.strip_prefix('X')).map(str::to_owned));
        std::io::copy(
            &mut (&mut input).take(i420_len(header.width, header.height) as u64),
            &mut std::io::sink(),
        )?;
    }
    Ok(comments)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::video::frame::test_pattern;

    #[test]
    fn frames_survive_a_round_trip() {
        let header = Y4mHeader { width: 64, height: 48, rate: (25, 1) };
        let mut writer = Y4mWriter::new(Vec::new(), header).unwrap();
        let frames: Vec<_> = (0..3).map(|i| test_pattern(64, 48, i).unwrap()).collect();
        for (i, frame) in frames.iter().enumerate() {
            writer.write_frame(frame, Some(&format!("TS={i}"))).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let (read_header, read) = Y4mReader::new(&bytes[..]).unwrap().read_all(10).unwrap();
        assert_eq!(read_header, header);
        assert_eq!(read, frames);
        let comments = frame_comments(&bytes[..]).unwrap();
        assert_eq!(comments, vec![Some("TS=0".into()), Some("TS=1".into()), Some("TS=2".into())]);
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let err = |bytes: &[u8]| Y4mReader::new(bytes).and_then(|r| r.read_all(10)).unwrap_err().to_string();
        assert_eq!(err(b"RIFF...."), "not a YUV4MPEG2 file");
        assert!(err(b"YUV4MPEG2 W64 H48 C444\n").contains("not 4:2:0"));
        assert!(err(b"YUV4MPEG2 W64 H48 C420p10\n").contains("not 4:2:0"));
        assert!(err(b"YUV4MPEG2 W64\n").contains("no H"));
        assert!(err(b"YUV4MPEG2 W99999 H48\n").contains("not a frame size"));
        assert!(err(b"YUV4MPEG2 W64 H48 It\n").contains("interlaced"));
        assert!(err(b"YUV4MPEG2 W64 H48\nFRAME\nshort").contains("middle of a frame"));
        assert!(err(b"YUV4MPEG2 W64 H48\nFRAMX\n").contains("FRAME"));
        assert!(err("YUV4MPEG2 W64 H48 éx\n".as_bytes()).contains("not valid"), "a multi-byte field tag");
        let long = format!("YUV4MPEG2 W64 H48 X{}\n", "a".repeat(600));
        assert!(err(long.as_bytes()).contains("longer than"));
    }
}
