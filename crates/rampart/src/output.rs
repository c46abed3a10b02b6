//! Standard output for every command. A reader that stops early (`rampart --json history |
//! head -c 100`) closes the pipe: the command then ends quietly with status 141, as a program
//! killed by SIGPIPE does (`ls | head`), instead of panicking with a backtrace. Any other
//! failure to write is an error message and status 1.

use std::io::Write;

/// Write `args`, then a newline if asked, to standard output, or end the process as described
/// above.
pub(crate) fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that ends quietly on a closed pipe (see the module).
macro_rules! outln {
    () => { $crate::output::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*), true) };
}
