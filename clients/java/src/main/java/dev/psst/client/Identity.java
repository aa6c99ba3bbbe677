package dev.psst.client;

import java.util.List;

/**
 * How the agent sees this process and what its policy grants it ({@link PsstClient#whoAmI()}).
 *
 * @param caller the calling process as the kernel and /proc describe it
 * @param grants what the policy grants the caller, by operation
 * @param matchedRules names of the policy rules that matched the caller
 */
public record Identity(Caller caller, List<Grant> grants, List<String> matchedRules) {
  public Identity {
    grants = List.copyOf(grants);
    matchedRules = List.copyOf(matchedRules);
  }

  /**
   * The calling process.
   *
   * @param pid 0 when the process is not visible to the agent (another PID namespace)
   * @param identitySource {@code "process"} when identified from /proc, {@code "uid"} when only
   *     uid and gid are known
   */
  public record Caller(long uid, long gid, int pid, String user, String group, List<Long> supplementaryGids,
      String executable, String cgroup, String containerId, String podUid, String systemdUnit,
      String identitySource) {
    public Caller {
      supplementaryGids = List.copyOf(supplementaryGids);
    }
  }

  /**
   * One granted operation.
   *
   * @param operation {@code read}, {@code list}, {@code write}, {@code watch}, {@code rotate} or {@code admin}
   * @param patterns reference patterns (globs) it is granted on
   */
  public record Grant(String operation, List<String> patterns) {
    public Grant {
      patterns = List.copyOf(patterns);
    }
  }

  static Identity fromProto(dev.psst.v1.WhoAmIResponse r) {
    dev.psst.v1.Caller c = r.getCaller();
    Caller caller = new Caller(Integer.toUnsignedLong(c.getUid()), Integer.toUnsignedLong(c.getGid()), c.getPid(),
        c.getUser(), c.getGroup(),
        c.getSupplementaryGidsList().stream().map(Integer::toUnsignedLong).toList(),
        c.getExecutable(), c.getCgroup(), c.getContainerId(), c.getPodUid(), c.getSystemdUnit(),
        c.getIdentitySource());
    List<Grant> grants = r.getGrantsList().stream().map(g -> new Grant(g.getOperation(), g.getPatternsList())).toList();
    return new Identity(caller, grants, r.getMatchedRulesList());
  }
}
