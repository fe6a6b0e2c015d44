integration_runtime::integration!("./specs/paginate_missing_style_key.toml");

fn main() {}
