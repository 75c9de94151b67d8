//! Organization deletion: the time `DELETE /api/organization` takes (its synchronous part, which
//! must stay under 1 s whatever the organization's size) and the deletion job's pace, against
//! DynamoDB Local through the dev gateway's router.
//!
//! Each organization gets an owner, a member and `calls` call records. The records are written
//! straight into its partition with `BatchWriteItem` (set-up speed only; they have the shape
//! usage-tracking writes), so a 20,000-call organization is ready in seconds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::TestApp;

use crate::BenchResult;

#[derive(clap::Args)]
pub struct Args {
    /// Organization sizes, in call records.
    #[arg(long, value_delimiter = ',', default_value = "0,2000,20000")]
    pub calls: Vec<usize>,
    /// Markdown section output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

struct Row {
    calls: usize,
    delete: Duration,
    delete_requests: usize,
    again: Duration,
    job: Duration,
    items: u64,
}

pub async fn run(args: Args) -> BenchResult {
    let app = TestApp::start().await;
    let mut rows = Vec::new();
    for (index, calls) in args.calls.iter().copied().enumerate() {
        let owner_sub = format!("auth0|bench-delete-{index}");
        let (owner, user) = app
            .organization_on_plan(&owner_sub, Plan::Business, PlanStatus::Active)
            .await;
        app.add_member(&owner, &format!("auth0|bench-member-{index}"), "MANAGER")
            .await;
        let tenant = user.tenant().ok_or("the owner has no organization")?;
        tollgate_tests::write_call_records(&app.store, &tenant, 0..calls).await?;
        app.store
            .set_organization_plan(&tenant, Some(Plan::Business), PlanStatus::Canceled)
            .await?;
        app.dynamodb_requests.take();
        let started = Instant::now();
        let deleted = app.delete("/api/organization", &owner).await;
        let delete = started.elapsed();
        let delete_requests = app.dynamodb_requests.take().len();
        if deleted.status != 202 {
            return Err(format!("DELETE answered {}: {}", deleted.status, deleted.body).into());
        }
        let started = Instant::now();
        let again = app.delete("/api/organization", &owner).await;
        let again_time = started.elapsed();
        if again.status != 202 {
            return Err(format!("the repeated DELETE answered {}", again.status).into());
        }
        let started = Instant::now();
        let job = org_cleanup::run_job(
            &app.store,
            &tenant,
            Instant::now() + Duration::from_secs(3600),
        )
        .await?
        .ok_or("the job was not running")?;
        let job_time = started.elapsed();
        if !job.is_finished() {
            return Err("the job did not finish".into());
        }
        eprintln!(
            "deletion: {calls} calls: DELETE {delete:?}, again {again_time:?}, job {job_time:?} ({} items)",
            job.deletion_items_expired
        );
        rows.push(Row {
            calls,
            delete,
            delete_requests,
            again: again_time,
            job: job_time,
            items: job.deletion_items_expired,
        });
    }
    let mut markdown = String::from(
        "## Organization deletion\n\n\
         `tollgate-bench deletion`: an organization with an owner, a member and N call records, on a \
         canceled plan, deleted through the dev gateway's router against DynamoDB Local. \
         **DELETE** is the synchronous part the caller waits for (target: under 1 s whatever the \
         size); its DynamoDB requests include the pipeline's own (user, rate limit). **Again** is \
         the same DELETE sent while the job runs (it answers the job's state). **Job** is the \
         org-cleanup handler run to the end in one process (detach members, withdraw invitations, \
         expire every item), in batches of 200 with 16 writes in flight.\n\n\
         | call records | DELETE | DynamoDB requests | again | job | items expired | job items/s |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in &rows {
        let per_second = row.items as f64 / row.job.as_secs_f64().max(0.001);
        markdown.push_str(&format!(
            "| {} | {:.1} ms | {} | {:.1} ms | {:.1} s | {} | {:.0} |\n",
            row.calls,
            row.delete.as_secs_f64() * 1000.0,
            row.delete_requests,
            row.again.as_secs_f64() * 1000.0,
            row.job.as_secs_f64(),
            row.items,
            per_second
        ));
    }
    markdown.push('\n');
    Ok(markdown)
}
