//! The KubeVirt VirtualMachine manifest that boots a containerDisk (`--kubevirt-manifest`).

/// A VirtualMachine (kubevirt.io/v1) named after the app, booting `image` (best pinned by
/// digest: `REGISTRY/REPO@sha256:...`) with UEFI firmware, as YAML.
pub fn vm_manifest(name: &str, image: &str, memory_mib: u64, image_sha256: &str) -> String {
    let name = k8s_name(name);
    format!(
        "# KubeVirt VirtualMachine for the Kiln image {name}; written by `cargo xtask publish`.
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: {name}
    app.kubernetes.io/managed-by: kiln
  annotations:
    dev.kiln/image-sha256: \"{image_sha256}\"
spec:
  runStrategy: Always
  template:
    metadata:
      labels:
        kubevirt.io/domain: {name}
    spec:
      domain:
        firmware:
          bootloader:
            efi:
              secureBoot: false
        devices:
          disks:
            - name: containerdisk
              disk:
                bus: virtio
        resources:
          requests:
            memory: {memory_mib}Mi
      volumes:
        - name: containerdisk
          containerDisk:
            image: \"{image}\"
"
    )
}

/// A Kubernetes object name (RFC 1123 label) from an app name.
pub fn k8s_name(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "kiln-app".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_pins_the_disk() {
        let y = vm_manifest("Hello_App", "127.0.0.1:5000/hello@sha256:ab", 128, "cd");
        assert!(y.contains("kind: VirtualMachine"));
        assert!(y.contains("name: hello-app\n"));
        assert!(y.contains("image: \"127.0.0.1:5000/hello@sha256:ab\""));
        assert!(y.contains("memory: 128Mi"));
        assert!(y.contains("efi:"));
        assert_eq!(k8s_name("--"), "kiln-app");
    }
}
