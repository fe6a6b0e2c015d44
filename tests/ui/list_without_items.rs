integration_runtime::integration!("./specs/list_without_items.toml");

fn main() {}
