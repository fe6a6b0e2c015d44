integration_runtime::integration!("./specs/min_greater_than_max.toml");

fn main() {}
