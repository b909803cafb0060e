//! The webhook parser accepts every `workflow_job` example of `@octokit/webhooks-examples`.

use gha_dispatcher::webhook::parse_workflow_job;

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
        assert!(
            gha_dispatcher::db::status_rank(&update.status)
                >= gha_dispatcher::db::status_rank(&action)
        );
    }
}
