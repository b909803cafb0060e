//! The Slurm jobs a run created, as `squeue` lists them: told apart from other users' and
//! other runs' jobs by the run's unique runner-name prefix in the job name or comment.

use anyhow::{ensure, Context, Result};

use e2e::Cluster;

/// One line of `squeue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJob {
    pub id: u32,
    pub name: String,
    pub comment: String,
    /// `PENDING`, `RUNNING`, `COMPLETING`, ...
    pub state: String,
}

/// Every job of `user` that Slurm still lists as pending, running or completing.
pub fn jobs_of(cluster: &Cluster, user: &str) -> Result<Vec<SlurmJob>> {
    let output = cluster
        .command("squeue")
        .args(["--noheader", "--user", user, "--format=%i|%T|%j|%k"])
        .output()
        .context("running squeue")?;
    ensure!(
        output.status.success(),
        "squeue failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(parse_squeue(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_squeue(text: &str) -> Vec<SlurmJob> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, '|');
            let id = fields.next()?.trim().parse().ok()?;
            let state = fields.next()?.trim().to_owned();
            let name = fields.next().unwrap_or_default().trim().to_owned();
            let comment = fields.next().unwrap_or_default().trim().to_owned();
            Some(SlurmJob {
                id,
                name,
                comment,
                state,
            })
        })
        .collect()
}

/// The jobs of the run whose runner names start with `prefix`.
pub fn run_jobs(cluster: &Cluster, prefix: &str) -> Result<Vec<SlurmJob>> {
    Ok(jobs_of(cluster, cluster.test_user())?
        .into_iter()
        .filter(|job| job.name.contains(prefix) || job.comment.contains(prefix))
        .collect())
}

/// Cancels the given jobs (as root); missing ones are not an error.
pub fn cancel(cluster: &Cluster, ids: &[u32]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let status = cluster
        .command("scancel")
        .args(ids.iter().map(u32::to_string))
        .status()
        .context("running scancel")?;
    ensure!(status.success(), "scancel failed: {status}");
    Ok(())
}

/// Cancels the run's Slurm jobs when dropped, so an error or Ctrl-C in the driver leaves no
/// runner job behind. Drop it after the dispatcher is stopped, or it may submit more.
pub struct CancelOnDrop<'a> {
    pub cluster: &'a Cluster,
    pub prefix: String,
    /// Jobs seen for this run, in case a name does not carry the prefix.
    pub seen: std::collections::BTreeSet<u32>,
}

impl CancelOnDrop<'_> {
    /// Cancels every job of the run still listed; returns how many there were.
    pub fn cancel_now(&self) -> Result<usize> {
        let ids: Vec<u32> = jobs_of(self.cluster, self.cluster.test_user())?
            .into_iter()
            .filter(|job| {
                job.name.contains(&self.prefix)
                    || job.comment.contains(&self.prefix)
                    || self.seen.contains(&job.id)
            })
            .map(|job| job.id)
            .collect();
        cancel(self.cluster, &ids)?;
        Ok(ids.len())
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        match self.cancel_now() {
            Ok(0) => {}
            Ok(n) => eprintln!("cancelled {n} Slurm job(s) this run left behind"),
            Err(error) => eprintln!("cancelling this run's Slurm jobs: {error:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_squeue_lines_with_empty_comments() {
        let jobs = parse_squeue("12|RUNNING|demo-ab-1|(null)\n13|PENDING|wrap|\nnoise\n");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].id, 12);
        assert_eq!(jobs[0].name, "demo-ab-1");
        assert_eq!(jobs[1].state, "PENDING");
        assert_eq!(jobs[1].comment, "");
    }
}
