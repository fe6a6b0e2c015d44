integration_runtime::integration!("./specs/retry_class_not_listed.toml");

fn main() {}
