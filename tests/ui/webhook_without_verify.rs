integration_runtime::integration!("./specs/webhook_without_verify.toml");

fn main() {}
