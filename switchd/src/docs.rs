//! The man page and the shell completions of a binary, generated from its command-line
//! definition (clap), for the Debian package (`dist/deb/build-deb.sh`): `switchd
//! generate-docs DIR` and `switchctl generate-docs DIR`. Shared by both binaries.

use std::path::Path;

use clap_complete::Shell;

/// Writes into `dir`: `NAME.SECTION` (the man page, roff), and the completions
/// `bash/NAME`, `zsh/_NAME` and `fish/NAME.fish`.
pub fn write(mut cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(section)
        .render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.{section}")), page)?;
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut out);
        std::fs::create_dir_all(dir.join(sub))?;
        std::fs::write(dir.join(sub).join(file), out)?;
    }
    Ok(())
}
