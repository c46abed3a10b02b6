//! Proof-of-work figures for docs/benchmarks.md: `cargo bench -p rampart-core --bench challenge`.
//!
//! What a `require_challenge` action costs: the caller's time to answer one challenge at the
//! default difficulty (20 bits) and at 16 and 24, over many fresh challenges each run (the work
//! per challenge is random: the mean, median and 90th percentile say more than one run), and
//! the server's time to issue and check one. Every answer is checked by the server's own `check` before its time
//! counts; a bench that did not do the work stops rather than print a figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use rampart_core::AccountId;
use rampart_core::challenge::{ChallengeKey, SOLVE_BUDGET, solve, work_bits};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CALLER: AccountId = AccountId(1);
const CALLEE: AccountId = AccountId(2);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    // Fresh challenges each run: the work per challenge is random, and runs are samples.
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let key = ChallengeKey::generate(&mut rng);
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for (bits, samples) in [(16u8, 200usize), (20, 60), (24, 20)] {
        let mut times = Vec::with_capacity(samples);
        let mut hashes = 0u64;
        for _ in 0..samples {
            let challenge = key.issue(CALLER, CALLEE, bits, 0, &mut rng);
            let started = Instant::now();
            let nonce = solve(&challenge.token, challenge.difficulty_bits, SOLVE_BUDGET).unwrap();
            let took = started.elapsed();
            // Counted only if the server would take it.
            key.check(CALLER, CALLEE, &challenge.token, nonce, 1).unwrap();
            assert!(work_bits(&challenge.token, nonce) >= u32::from(bits));
            hashes += nonce + 1;
            times.push(took);
        }
        assert_eq!(times.len(), samples);
        times.sort();
        let total: Duration = times.iter().sum();
        let rate = hashes as f64 / total.as_secs_f64();
        println!(
            "answer a {bits}-bit challenge: mean {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {samples} challenges ({:.2} M hashes/s on one core)",
            total.as_secs_f64() * 1e3 / samples as f64,
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.9).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
            rate / 1e6
        );
    }
    // The server's side: issue and check, per challenge.
    let rounds = 20_000u32;
    let issued: Vec<_> = (0..rounds).map(|_| key.issue(CALLER, CALLEE, 8, 0, &mut rng)).collect();
    let answers: Vec<u64> = issued.iter().map(|c| solve(&c.token, 8, SOLVE_BUDGET).unwrap()).collect();
    let started = Instant::now();
    let mut passed = 0u32;
    for (c, nonce) in issued.iter().zip(&answers) {
        passed += u32::from(key.check(CALLER, CALLEE, &c.token, *nonce, 1).is_ok());
    }
    let check = started.elapsed();
    assert_eq!(passed, rounds, "not every answer checked");
    let started = Instant::now();
    let mut tokens = 0usize;
    for _ in 0..rounds {
        tokens += key.issue(CALLER, CALLEE, 20, 0, &mut rng).token.len();
    }
    let issue = started.elapsed();
    assert_eq!(tokens, rounds as usize * rampart_core::challenge::TOKEN_BYTES);
    println!(
        "server: issue {:.2} µs, check {:.2} µs per challenge ({rounds} of each)",
        issue.as_secs_f64() * 1e6 / f64::from(rounds),
        check.as_secs_f64() * 1e6 / f64::from(rounds)
    );
}
