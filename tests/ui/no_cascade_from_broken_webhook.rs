integration_runtime::integration!("./specs/no_cascade_from_broken_webhook.toml");

fn main() {}
