//! The webhook parser accepts every `workflow_job` example of `@octokit/webhooks-examples`.

use gha_dispatcher::intake::parse_workflow_job;
use gha_dispatcher::model::JobStatus;

#[test]
fn all_octokit_workflow_job_examples_parse() {
    let examples = github_sim::fixtures::workflow_job_examples()
        .expect("npm fixtures (github-sim/fixtures/fetch.sh)");
    assert_eq!(
        examples.len(),
        8,
        "@octokit/webhooks-examples has 8 workflow_job examples"
    );
    for example in examples {
        let body = serde_json::to_vec(&example).unwrap();
        let (action, update) =
            parse_workflow_job(&body).unwrap_or_else(|e| panic!("{e}: {example}"));
        assert_eq!(action, example["action"].as_str().unwrap());
        assert_eq!(
            update.job_id,
            example["workflow_job"]["id"].as_u64().unwrap()
        );
        assert_eq!(
            update.repo,
            example["repository"]["full_name"].as_str().unwrap()
        );
        assert!(!update.labels.is_empty());
        // The recorded status is never behind the action.
        let action_rank = JobStatus::parse(&action).map_or(0, |a| a.rank());
        assert!(update.status.rank() >= action_rank);
    }
}
