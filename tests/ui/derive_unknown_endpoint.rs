#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_unknown_endpoint.toml", endpoint = "pnig")]
struct Greeting {
    text: String,
}

fn main() {}
