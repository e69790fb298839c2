//! Booting the scenario's stack in its runtime: the process stack
//! (`gauntlet-stack`) or the container stack (`gauntlet-containers`, images
//! built first when missing or stale).

use std::path::Path;

use gauntlet_control::Stack;
use gauntlet_scenario::Scenario;
use gauntlet_stack::{ProcessStack, bins};

/// Boots the scenario's stack in its runtime (`stack.runtime`, which
/// `--runtime` overrides): the process stack, or the container stack with
/// its images built first when missing or stale. The rest of the run only
/// sees the [`Stack`].
///
/// In process mode `routes` says how a service reaches each service it
/// references (through a fault proxy when a link fault names the link);
/// containers reach each other on the run's network.
pub async fn boot(
    scenario: &Scenario,
    run_dir: &Path,
    bins: &bins::Locator,
    quiet: bool,
    routes: &dyn gauntlet_stack::Routes,
) -> Result<std::sync::Arc<dyn Stack>, String> {
    use gauntlet_scenario::Runtime;
    match scenario.stack.runtime {
        Runtime::Process => Ok(std::sync::Arc::new(
            ProcessStack::boot_with(scenario, run_dir, bins, quiet, routes)
                .await
                .map_err(|e| e.to_string())?,
        )),
        Runtime::Containers => {
            let images = crate::containers_cmd::ensure_images(scenario, quiet).await?;
            let run_id = run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".to_owned());
            let stack = gauntlet_containers::stack::ContainerStack::boot(
                gauntlet_containers::stack::BootSpec {
                    scenario,
                    run_id: &run_id,
                    run_dir,
                    images: &images,
                    quiet,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(std::sync::Arc::new(stack))
        }
    }
}
