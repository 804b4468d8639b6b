pub async fn run(_seconds: Option<u64>) -> anyhow::Result<()> {
    anyhow::bail!("demo: not yet")
}
