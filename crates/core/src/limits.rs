//! Hard protocol limits. The decoder enforces these on every frame and field; the server may be
//! configured stricter but never looser.

/// Largest WebSocket binary frame either side accepts (version byte + protobuf). Sized for an
/// MLS commit and its Welcome into a large group; everything else is far smaller and has its
/// own field limit.
pub const MAX_FRAME_BYTES: usize = 2 * MAX_HANDSHAKE_BYTES + MAX_GROUP_INFO_BYTES + 16 * 1024;
/// Largest MLS commit or Welcome (with the ratchet tree of a group of about 1,000 devices).
pub const MAX_HANDSHAKE_BYTES: usize = 1024 * 1024;
/// Largest GroupInfo a new group's first commit carries (the group before it: its creator's
/// device alone, with the ratchet tree), from which the server starts the group's public state.
pub const MAX_GROUP_INFO_BYTES: usize = 16 * 1024;
/// Frames before authentication (register, verify, authenticate, begin link, ping) are small:
/// a larger one closes the connection, so an anonymous peer cannot make the server decode
/// megabytes.
pub const MAX_ANONYMOUS_FRAME_BYTES: usize = 4 * 1024;
/// Largest device certificate.
pub const MAX_CERTIFICATE_BYTES: usize = 512;
/// Largest MLS key package.
pub const MAX_KEY_PACKAGE_BYTES: usize = 4 * 1024;
/// Most key packages uploaded at once.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 100;
/// Most accounts or devices named in one key request.
pub const MAX_KEY_REQUEST_ITEMS: usize = 256;
/// Most devices one commit adds or removes.
pub const MAX_COMMIT_DEVICES: usize = 256;
/// Default most member devices of one group.
pub const DEFAULT_MAX_GROUP_DEVICES: u32 = 2_000;
/// One-time key packages a device keeps on the server.
pub const KEY_PACKAGE_STOCK: u32 = 50;
/// Largest opaque message body (Signal's limit is 96 KiB; ours too).
pub const MAX_BODY_BYTES: usize = 96 * 1024;
/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME_BYTES: usize = 64;
/// Most server message ids in one acknowledgement.
pub const MAX_ACK_IDS: usize = 512;
/// Longest human-readable error text the server sends.
pub const MAX_ERROR_TEXT_BYTES: usize = 512;
/// Longest sender label (an @username or an E.164 number).
pub const MAX_LABEL_BYTES: usize = 40;
/// Most devices listed in one response (an account never has more than this many).
pub const MAX_LISTED_DEVICES: usize = 64;
/// Length of a device secret, in bytes.
pub const DEVICE_SECRET_BYTES: usize = 32;
/// Longest verification or link code accepted, in bytes.
pub const MAX_CODE_BYTES: usize = 16;
/// Most messages the server pushes before it waits for acknowledgements.
pub const MAX_IN_FLIGHT: usize = 256;

/// Default number of devices one account may have.
pub const DEFAULT_MAX_DEVICES: u32 = 5;
/// Default maximum queue length per device.
pub const DEFAULT_MAX_QUEUE: u32 = 10_000;
/// Of a device's queue, what one other account may fill by default: a fifth, so a stranger's
/// flood leaves room for everyone else.
pub const DEFAULT_MAX_QUEUE_PER_SENDER: u32 = 2_000;
/// Default time to live of a queued message: 30 days.
pub const DEFAULT_MESSAGE_TTL_SECS: u64 = 30 * 24 * 3600;
/// Default lifetime of a verification or link code: 10 minutes.
pub const DEFAULT_CODE_TTL_SECS: u64 = 600;
/// Wrong guesses allowed against one verification code before it is burnt.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// Largest attachment (plaintext).
pub const MAX_ATTACHMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Plaintext bytes per sealed segment of an attachment (each carries a 16-byte tag).
pub const ATTACHMENT_SEGMENT_BYTES: u64 = 64 * 1024;
/// Largest attachment ciphertext the blob store accepts: the plaintext limit plus one tag per
/// segment (an empty file still has one segment).
pub const MAX_ATTACHMENT_CIPHERTEXT_BYTES: u64 =
    MAX_ATTACHMENT_BYTES + (MAX_ATTACHMENT_BYTES / ATTACHMENT_SEGMENT_BYTES + 1) * 16;
/// Largest piece of an attachment in one upload or download frame.
pub const MAX_ATTACHMENT_CHUNK_BYTES: usize = 1024 * 1024;
/// Length of a blob id (random, chosen by the server; knowing it is what allows a download).
pub const BLOB_ID_BYTES: usize = 16;

/// Largest call offer (an MLS application message) the server holds until accept.
pub const MAX_CALL_OFFER_BYTES: usize = 16 * 1024;
/// Largest later call signal (answer, candidates, update...).
pub const MAX_CALL_SIGNAL_BYTES: usize = 8 * 1024;
/// Largest encoded ring-notice envelope: the fixed schema fits in well under this.
pub const MAX_RING_ENVELOPE_BYTES: usize = 128;
/// Longest software name a device gives when it signs in (`rampart/0.1.0`), in bytes.
pub const MAX_CLIENT_NAME_BYTES: usize = 64;
/// Longest text of a notice from the server's operators (UTF-8 bytes).
pub const MAX_SERVER_NOTICE_BYTES: usize = 2048;
/// Most relays offered in one set of relay credentials.
pub const MAX_RELAYS: usize = 4;
/// Longest relay entry (`host:port` or a `turn:`/`turns:` URI) in relay credentials.
pub const MAX_RELAY_BYTES: usize = 255;
