integration_runtime::integration!("./specs/default_on_list.toml");

fn main() {}
