integration_runtime::integration!("./specs/async_without_external_id.toml");

fn main() {}
