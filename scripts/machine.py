"""What the scripts print of the machine beside their figures, from /proc/cpuinfo: the CPU's
name, family and model, and the vector and matrix features the kernel paths need.
"""

FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpuinfo():
    """The first processor's fields, by name, and every processor's clock in MHz."""
    fields, mhz = {}, []
    with open("/proc/cpuinfo") as lines:
        for line in lines:
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if name == "cpu MHz":
                mhz.append(float(value))
            fields.setdefault(name, value)
    return fields, mhz


def flags(fields):
    """The CPU's feature flags, as Linux names them, from `cpuinfo()`'s fields."""
    return set(fields.get("flags", "").split())


def describe():
    """`name (family F model M; features)`, as every figure's machine line names the CPU."""
    fields, _ = cpuinfo()
    present = [f for f in FEATURES if f in flags(fields)]
    return (f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')} "
            f"model {fields.get('model', '?')}; {' '.join(present)})")
