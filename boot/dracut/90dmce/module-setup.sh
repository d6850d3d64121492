#!/bin/bash
# dracut module of dmce: checks and activates the dm-clone / dm-era targets listed
# in /etc/dmce/targets (dmce-targets(5)) before the root file system is mounted.
# Paths substituted by `make install`.

DMCE=@SBINDIR@/dmce
ASSEMBLE=@LIBEXECDIR@/dmce-assemble
CONF=@CONFDIR@/targets

# Included on demand (or with --add dmce) when the configuration lists targets.
check() {
    [[ -x $DMCE && -x $ASSEMBLE && -r $CONF ]] || return 1
    sed 's/#.*//' "$CONF" | grep -q '[^[:space:]]' || return 1
    return 0
}

depends() {
    echo dm
    return 0
}

installkernel() {
    instmods dm-clone dm-era
}

install() {
    inst_binary "$DMCE" /sbin/dmce
    ln_r /sbin/dmce /sbin/clone_check
    ln_r /sbin/dmce /sbin/era_check
    inst_script "$ASSEMBLE" /sbin/dmce-assemble
    inst_multiple dmsetup readlink sed grep cat sleep
    inst_simple "$CONF" /etc/dmce/targets
    inst_hook initqueue/settled 50 "$moddir/dmce-settled.sh"
}
