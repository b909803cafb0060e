//! `squeue --noheader --format=%i|%U|%T|%B|%N|%j` and `scontrol show node -o` output as the
//! dispatcher reads it: job names are the submitters' text. Never a panic; a job read back
//! has a known state, and its name is everything after the fifth `|` of its line.
#![no_main]

use gha_dispatcher::clients::slurm::{parse_node_addresses, parse_squeue_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(jobs) = parse_squeue_lines(text) {
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(jobs.len(), lines);
        for job in jobs {
            assert!(text.contains(&job.job_id.to_string()));
            assert!(!job.name.contains('\n'));
        }
    }
    let _ = parse_node_addresses(text);
});
