integration_runtime::integration!("./specs/body_on_get.toml");

fn main() {}
