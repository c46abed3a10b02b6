#![no_main]
//! `.y4m` files as `rampart call --video-play` reads them: the reader and the comment scanner
//! never panic, and every frame read has the header's size.

use libfuzzer_sys::fuzz_target;
use rampart_media::video::y4m::{Y4mReader, frame_comments};

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = Y4mReader::new(data) {
        let header = reader.header();
        if let Ok((_, frames)) = reader.read_all(4) {
            for frame in frames {
                assert_eq!((frame.width(), frame.height()), (header.width, header.height));
            }
        }
    }
    let _ = frame_comments(data);
});
