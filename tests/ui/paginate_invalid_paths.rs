integration_runtime::integration!("./specs/paginate_invalid_paths.toml");

fn main() {}
