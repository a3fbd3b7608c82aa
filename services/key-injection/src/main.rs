//! The key-injection service as its own process (distributed deployment).

use std::time::Duration;

use key_injection::SERVICE;
use key_injection::service::{KiOptions, vars};
use mpos_config::{ConfigError, Vars, exit_on_error};
use mpos_service::{CommonConfig, Running, Started};

fn options(vars: &Vars) -> Result<KiOptions, ConfigError> {
    use device_identity::rustls::pki_types::CertificateDer;
    use device_identity::rustls::pki_types::pem::PemObject;
    let path = vars.string(vars::KDH_CERTIFICATE, None, "a PEM file path")?;
    let certificate = CertificateDer::from_pem_file(&path).map_err(|error| {
        ConfigError::invalid(
            vars::KDH_CERTIFICATE,
            "a PEM certificate file",
            &error.to_string(),
        )
    })?;
    let cas_path = vars.string(vars::KRD_CAS, None, "a PEM file path")?;
    let krd_cas = CertificateDer::pem_file_iter(&cas_path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| {
            ConfigError::invalid(
                vars::KRD_CAS,
                "a PEM file of CA certificates",
                &error.to_string(),
            )
        })?
        .iter()
        .map(|ca| ca.as_ref().to_vec())
        .collect();
    Ok(KiOptions {
        operator_token: vars.secret(vars::OPERATOR_TOKEN, 32)?,
        kdh_key: vars.string(vars::KDH_KEY, Some("alias/kdh"), "a key id or alias")?,
        kdh_certificate: certificate.as_ref().to_vec(),
        krd_cas,
        hsm_timeout: vars.duration_ms("MPOS_KI_HSM_TIMEOUT_MS", 5_000)?,
        confirmation_window: Duration::from_secs(3_600),
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let vars = Vars::from_env();
    let config = exit_on_error(CommonConfig::from_vars(
        &vars,
        SERVICE,
        "0.0.0.0:8080",
        "0.0.0.0:9090",
    ));
    let options = exit_on_error(options(&vars));
    let (config, options) = (&config, &options);
    mpos_service::run_process(&vars, config, |started: Started| async move {
        let running = key_injection::service::start(
            config,
            started.store,
            &started.bus,
            &started.infrastructure,
            options,
            started.listener,
            &started.cancel,
        )
        .await?;
        Ok::<Running, std::io::Error>(Box::pin(running.join()))
    })
    .await
}
