// Runners: each one's Slurm job, node, Unix user, state and since when, and its GitHub job.
import type { Runner } from "../api";
import { clock } from "./format";

export function Runners({ runners }: { runners: Runner[] }) {
  if (runners.length === 0) return <p className="empty">No runners yet.</p>;
  return (
    <div className="scroll">
      <table className="runners">
        <thead><tr><th>runner</th><th>pool</th><th>Slurm job</th><th>node</th><th>user</th><th>state</th><th>since</th><th>GitHub job</th></tr></thead>
        <tbody>{runners.map((r) => (
          <tr key={r.name} data-runner={r.name} data-state={r.state} data-user={r.user ?? ""}>
            <td>{r.name}</td><td>{r.pool}</td><td>{r.slurm_job_id ?? "–"}</td><td>{r.node ?? "–"}</td>
            <td className="user">{r.user ?? "–"}</td><td className={`state ${r.state}`}>{r.state}</td>
            <td>{clock(r.since * 1000)}</td>
            <td>{r.job_id ? (r.job_url ? <a href={r.job_url} target="_blank" rel="noreferrer noopener">{r.job_id}</a> : r.job_id) : "–"}</td>
          </tr>
        ))}</tbody>
      </table>
    </div>
  );
}
