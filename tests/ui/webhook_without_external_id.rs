integration_runtime::integration!("./specs/webhook_without_external_id.toml");

fn main() {}
