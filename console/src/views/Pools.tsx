// Pools: capacity and runners by phase, and every waiting job with the reason it waits.
import type { Pool } from "../api";

export function Pools({ pools }: { pools: Pool[] }) {
  if (pools.length === 0) return <p className="empty">No pools are configured.</p>;
  return (
    <div className="cards">
      {pools.map((p) => (
        <section key={p.name} className="card" aria-label={`pool ${p.name}`} data-pool={p.name}>
          <h2>{p.name}</h2>
          <p className="labels">{p.labels.join(", ")}</p>
          <dl className="counts">
            <div><dt>max</dt><dd data-count="max">{p.max_runners}</dd></div>
            <div><dt>pending</dt><dd data-count="pending">{p.pending}</dd></div>
            <div><dt>starting</dt><dd data-count="starting">{p.starting}</dd></div>
            <div><dt>idle</dt><dd data-count="idle">{p.idle}</dd></div>
            <div><dt>busy</dt><dd data-count="busy">{p.busy}</dd></div>
            <div><dt>waiting</dt><dd data-count="waiting">{p.waiting.length}</dd></div>
          </dl>
          {p.waiting.length > 0 && (
            <table>
              <caption>Waiting jobs</caption>
              <thead><tr><th>job</th><th>repository</th><th>why it waits</th></tr></thead>
              <tbody>{p.waiting.map((w) => (
                <tr key={w.job_id}><td>{w.job_id}</td><td>{w.repo}</td><td className="reason">{w.reason}</td></tr>
              ))}</tbody>
            </table>
          )}
        </section>
      ))}
    </div>
  );
}
