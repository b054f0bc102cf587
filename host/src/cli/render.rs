//! `flytewasm render TASK`: the object a task would create, as YAML.

use std::time::SystemTime;

use crate::executor::prepare;
use crate::task_file;

pub fn run(args: super::TaskArgs) -> anyhow::Result<()> {
    let template = task_file::read(&args.task)?;
    let config = args.host.config()?;
    let runtime = super::runtime(&config.runtime)?;
    let registry = crate::registry::Registry::load_dir(&runtime, &args.host.plugins)?;
    let plugin = registry.resolve(&template.r#type, template.task_type_version)?;
    let request = args.request(template, plugin);
    let prepared = prepare(plugin, &config, &request, SystemTime::now())?;
    print!("{}", super::output::yaml(&prepared.object));
    Ok(())
}
