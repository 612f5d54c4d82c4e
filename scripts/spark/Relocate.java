// Relocates a library into org.apache.iceberg.shaded, where Iceberg's Spark runtime
// expects what it shades but the runtime jar from PyPI lacks (Jackson, Apache
// HttpComponents 5), the way Maven's shade plugin would have: every class reference,
// every string constant naming a class of the package, and META-INF/services files
// (name and content). Run by scripts/install-spark:
//   java -cp xbean-asm9-shaded.jar Relocate.java PACKAGE OUT.jar IN.jar...
// e.g. PACKAGE = com/fasterxml/jackson/ or org/apache/hc/
// Signatures and module-info descriptors are dropped: they no longer match.
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.jar.JarOutputStream;
import org.apache.xbean.asm9.ClassReader;
import org.apache.xbean.asm9.ClassWriter;
import org.apache.xbean.asm9.commons.ClassRemapper;
import org.apache.xbean.asm9.commons.Remapper;

public class Relocate {
  static String FROM;
  static String TO;
  static String FROM_DOTS;
  static String TO_DOTS;

  static String relocate(String s) {
    if (s.startsWith(FROM)) return TO + s.substring(FROM.length());
    if (s.startsWith(FROM_DOTS)) return TO_DOTS + s.substring(FROM_DOTS.length());
    return s;
  }

  static final Remapper REMAPPER = new Remapper() {
    @Override public String map(String internalName) { return relocate(internalName); }
    @Override public Object mapValue(Object value) {
      if (value instanceof String) return relocate((String) value);
      return super.mapValue(value);
    }
  };

  static boolean dropped(String name) {
    String upper = name.toUpperCase();
    return name.endsWith("module-info.class")
        || upper.startsWith("META-INF/") && (upper.endsWith(".SF") || upper.endsWith(".RSA")
            || upper.endsWith(".DSA") || upper.endsWith(".EC"))
        || upper.equals("META-INF/MANIFEST.MF") || name.endsWith("/");
  }

  public static void main(String[] args) throws IOException {
    FROM = args[0];
    TO = "org/apache/iceberg/shaded/" + FROM;
    FROM_DOTS = FROM.replace('/', '.');
    TO_DOTS = TO.replace('/', '.');
    Path out = Path.of(args[1]);
    Path tmp = out.resolveSibling(out.getFileName() + ".tmp");
    Set<String> seen = new HashSet<>();
    try (JarOutputStream jar = new JarOutputStream(Files.newOutputStream(tmp))) {
      for (int i = 2; i < args.length; i++) {
        try (JarFile in = new JarFile(args[i])) {
          for (JarEntry entry : java.util.Collections.list(in.entries())) {
            String name = entry.getName();
            if (dropped(name)) continue;
            byte[] bytes;
            try (InputStream s = in.getInputStream(entry)) { bytes = s.readAllBytes(); }
            if (name.endsWith(".class")) {
              ClassReader reader = new ClassReader(bytes);
              ClassWriter writer = new ClassWriter(0);
              reader.accept(new ClassRemapper(writer, REMAPPER), 0);
              bytes = writer.toByteArray();
              int versions = name.startsWith("META-INF/versions/") ? name.indexOf('/', 18) + 1 : 0;
              name = name.substring(0, versions) + relocate(name.substring(versions));
            } else if (name.startsWith("META-INF/services/")) {
              name = "META-INF/services/" + relocate(name.substring(18));
              StringBuilder text = new StringBuilder();
              for (String line : new String(bytes, StandardCharsets.UTF_8).split("\n", -1)) {
                if (text.length() > 0) text.append('\n');
                text.append(relocate(line.trim()));
              }
              bytes = text.toString().getBytes(StandardCharsets.UTF_8);
            } else {
              name = relocate(name);
            }
            if (!seen.add(name)) continue; // LICENSE/NOTICE appear in each jar: keep the first
            jar.putNextEntry(new JarEntry(name));
            jar.write(bytes);
            jar.closeEntry();
          }
        }
      }
    }
    Files.move(tmp, out, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
  }
}
