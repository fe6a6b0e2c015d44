integration_runtime::integration!("./specs/polling_without_external_id.toml");

fn main() {}
