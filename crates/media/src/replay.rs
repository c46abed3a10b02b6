//! The receiver's replay list (RFC 3711 §3.3.2) as a sliding window over packet indices.

/// How many packets behind the highest authenticated index are still accepted (once each).
/// RFC 3711 §3.3.2 asks for at least 64; 128 tolerates more reordering on a relayed path.
pub const REPLAY_WINDOW_PACKETS: u64 = 128;

/// Why an index is refused before any decryption is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayVerdict {
    Fresh,
    Replayed,
    TooOld,
}

/// Highest authenticated index and a bitmap of the `REPLAY_WINDOW_PACKETS` indices up to it
/// (bit `n` = index `highest - n` was received).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    highest: Option<u64>,
    received: u128,
}

impl ReplayWindow {
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether `index` may be accepted; changes nothing (RFC 3711 §3.3: the list is updated
    /// only once the packet has been authenticated, see [`Self::accept`]).
    pub(crate) fn check(&self, index: u64) -> ReplayVerdict {
        let Some(highest) = self.highest else {
            return ReplayVerdict::Fresh;
        };
        if index > highest {
            return ReplayVerdict::Fresh;
        }
        let behind = highest - index;
        if behind >= REPLAY_WINDOW_PACKETS {
            return ReplayVerdict::TooOld;
        }
        if self.received & (1u128 << behind) != 0 { ReplayVerdict::Replayed } else { ReplayVerdict::Fresh }
    }

    /// Records an authenticated index (which [`Self::check`] found fresh).
    pub(crate) fn accept(&mut self, index: u64) {
        match self.highest {
            Some(highest) if index <= highest => {
                let behind = highest - index;
                if behind < REPLAY_WINDOW_PACKETS {
                    self.received |= 1u128 << behind;
                }
            }
            Some(highest) => {
                let ahead = index - highest;
                self.received = if ahead >= REPLAY_WINDOW_PACKETS { 0 } else { self.received << ahead };
                self.received |= 1;
                self.highest = Some(index);
            }
            None => {
                self.received = 1;
                self.highest = Some(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_index_once_and_nothing_too_old() {
        let mut window = ReplayWindow::default();
        assert_eq!(window.check(1000), ReplayVerdict::Fresh);
        window.accept(1000);
        assert_eq!(window.check(1000), ReplayVerdict::Replayed);
        assert_eq!(window.check(999), ReplayVerdict::Fresh);
        window.accept(999);
        assert_eq!(window.check(999), ReplayVerdict::Replayed);
        assert_eq!(window.check(1000 - 127), ReplayVerdict::Fresh);
        assert_eq!(window.check(1000 - 128), ReplayVerdict::TooOld);
        window.accept(1005);
        assert_eq!(window.check(1000), ReplayVerdict::Replayed);
        assert_eq!(window.check(999), ReplayVerdict::Replayed);
        assert_eq!(window.check(1001), ReplayVerdict::Fresh);
        window.accept(5000);
        assert_eq!(window.check(1005), ReplayVerdict::TooOld);
        assert_eq!(window.check(4999), ReplayVerdict::Fresh);
        assert_eq!(window.highest(), Some(5000));
    }
}
