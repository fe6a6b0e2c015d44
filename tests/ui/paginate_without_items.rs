integration_runtime::integration!("./specs/paginate_without_items.toml");

fn main() {}
