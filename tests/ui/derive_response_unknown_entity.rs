#[derive(integration_runtime::IntegrationResponse)]
#[integration(spec = "./specs/derive_response_unknown_entity.toml", entity = "Pnog")]
struct Reply {
    echo: String,
}

fn main() {}
