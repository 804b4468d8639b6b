//! The `[detection]` section: detection's rules and thresholds (validated by the
//! detection crate), where its state lives, and its webhooks.

use std::path::PathBuf;

use toml::Spanned;

use super::{ConfigError, Context};

#[derive(Debug, Clone)]
pub struct DetectionConfig {
    pub settings: maskgate_detect::Settings,
    /// Suspensions and the webhook dead-letter file.
    pub state_dir: PathBuf,
}

impl Context<'_> {
    pub(super) fn validate_detection(
        &self,
        raw: &Spanned<maskgate_detect::RawSettings>,
        audited: bool,
    ) -> Result<DetectionConfig, ConfigError> {
        if !audited {
            return Err(self.error(
                raw,
                "[detection] needs an [audit] section: detection reads the audit trail and writes its alerts into it",
            ));
        }
        let settings = raw
            .get_ref()
            .validate()
            .map_err(|e| self.error(raw, e.to_string()))?;
        let state_dir = raw
            .get_ref()
            .state_dir
            .clone()
            .unwrap_or_else(|| "detection".to_owned());
        Ok(DetectionConfig {
            settings,
            state_dir: self.resolve_path(&Spanned::new(0..0, state_dir)),
        })
    }
}
