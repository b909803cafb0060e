//! `squeue --json` and `scontrol show node -o` output as the dispatcher reads it: job names
//! and comments are the submitters' text. Never a panic; only jobs named with the prefix and
//! run by a listed uid come back.
#![no_main]

use gha_dispatcher::clients::slurm::{parse_job, parse_node_addresses, parse_squeue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(jobs) = parse_squeue(text, "gha-", &[1000, 1001]) {
        for job in jobs {
            assert!(job.name.starts_with("gha-"));
            assert!([1000, 1001].contains(&job.user_id));
        }
    }
    let _ = parse_job(text, 101);
    let _ = parse_node_addresses(text);
});
