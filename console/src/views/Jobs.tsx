// Jobs: queued -> submitted -> started -> finished, with the time of each step.
import type { Job } from "../api";
import { clock } from "./format";

export function Jobs({ jobs }: { jobs: Job[] }) {
  if (jobs.length === 0) return <p className="empty">No jobs in the last hour.</p>;
  return (
    <div className="scroll">
      <table className="jobs">
        <thead><tr><th>job</th><th>repository</th><th>status</th><th>queued</th><th>submitted</th><th>started</th><th>finished</th><th>runner</th></tr></thead>
        <tbody>{jobs.map((j) => (
          <tr key={j.job_id} data-job={j.job_id} data-status={j.status}>
            <td><a href={j.url} target="_blank" rel="noreferrer noopener">{j.job_id}</a></td>
            <td>{j.repo}</td><td className={`status ${j.status}`}>{j.status}</td>
            <td>{clock(j.queued_ms)}</td><td>{clock(j.submitted_ms)}</td>
            <td>{clock(j.started_ms)}</td><td>{clock(j.finished_ms)}</td><td>{j.runner ?? "–"}</td>
          </tr>
        ))}</tbody>
      </table>
    </div>
  );
}
